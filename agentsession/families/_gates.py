"""Every AutoGen version gate, declared once with the upstream change it tracks.

Each gate is compared with ``at_least``, which always passes ``prereleases=True``: a dev or rc
build of a version counts as that version (packaging 24 and 26 disagree on the default).
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

# legacy family: `import autogen` (pyautogen 0.2, autogen-agentchat 0.2.x, ag2 0.x, autogen 0.14)
LEGACY_MINIMUM = Version("0.2.0")  # pyautogen 0.2.0: openai>=1 client; 0.1.x used openai<1
LEGACY_BELOW = Version(
    "1.0"
)  # ag2 1.0 dropped the `autogen` module (a different API, `import ag2`)
LEGACY_TESTED = SpecifierSet(">=0.2.35,<0.15")
LEGACY_IOSTREAM = Version("0.2.21")  # autogen.io.IOStream: output goes through a ContextVar
LEGACY_CACHE_SEED_IGNORED = Version("0.8.2")  # ag2 LLMConfig drops cache_seed=None (ag2ai/ag2#1640)
LEGACY_CACHE_OFF_BY_DEFAULT = Version("0.8.7")  # ag2 fixed #1640: no cache unless a seed is set

# agentchat family: `import autogen_agentchat` (autogen-agentchat 0.4+, pyautogen 0.10)
AGENTCHAT_MINIMUM = Version("0.4.2")  # oldest release whose save_state/load_state round-trips
AGENTCHAT_TOOL_RESULT_NAME = Version("0.4.8")  # FunctionExecutionResult requires name + is_error
AGENTCHAT_TEAM_STATE_REKEYED = Version("0.4.9")  # microsoft/autogen#5843: team state keyed by name
AGENTCHAT_PUBLIC_MODEL_CONTEXT = Version("0.5.0")  # microsoft/autogen#6072: public model_context
AGENTCHAT_TESTED = SpecifierSet(">=0.4.2,<0.8")

# maf family: `import agent_framework` (Microsoft Agent Framework, agent-framework-core 1.x)
MAF_MINIMUM = Version("1.0.0")  # GA: AgentSession + HistoryProvider (microsoft/agent-framework#3850
# removed AgentThread/ChatMessageStore; the 1.0.0b*/rc pre-releases before it are refused)
MAF_BELOW = Version("2.0")
MAF_DISTRIBUTION = "agent-framework-core"  # owns the agent_framework package
MAF_VERSION_PLACEHOLDER = "0.0.0"  # __version__ on 1.0.0 … 1.12.1 (looked up a missing dist)
MAF_VERSION_FIXED = Version("1.13.0")  # __version__ reads agent-framework-core from here on
MAF_TESTED = SpecifierSet(">=1.0.0,<1.24")

# ag2 family: `import ag2` (AG2 v1; the ag2 0.x distributions ship `import autogen`: legacy)
AG2_MINIMUM = Version("1.0.0")  # ag2 1.0 dropped `autogen` for the new `ag2` API
AG2_BELOW = Version("2.0")
AG2_TESTED = SpecifierSet(">=1.0.0,<1.3")


def parse(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def at_least(version: Version, gate: Version) -> bool:
    """True if ``version`` is ``gate`` or newer; a pre-release of ``gate`` counts as ``gate``."""
    return SpecifierSet(f">={gate.base_version}").contains(
        Version(version.base_version), prereleases=True
    )


def tested(version: Version, tested_range: SpecifierSet) -> bool:
    return tested_range.contains(Version(version.base_version), prereleases=True)
