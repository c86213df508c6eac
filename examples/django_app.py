"""Django (through the WSGI middleware) + agentsession, in one file: ``python examples/django_app.py runserver``.

Needs ``SECRET_KEY`` (32 bytes or more) in the environment; it refuses to start without one:
``export SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')"``.
"""

import json
import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponseBadRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

if not os.environ.get("SECRET_KEY"):  # never a default: a known key lets anyone forge ids
    raise SystemExit(
        "set SECRET_KEY first: python -c 'import secrets; print(secrets.token_hex(32))'"
    )
settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ["SECRET_KEY"],
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    WSGI_APPLICATION=f"{__name__}.application",
)

from agentsession import SessionManager  # noqa: E402
from agentsession.adapters.wsgi import ENVIRON_KEY, AgentSessionWSGIMiddleware  # noqa: E402
from agentsession.offline import offline_agent_factory  # noqa: E402


@csrf_exempt  # an API endpoint; the SameSite=Lax cookie keeps other sites from posting with it
def chat(request):
    try:
        body = json.loads(request.body)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return HttpResponseBadRequest('send JSON: {"message": "..."}')
    reply = request.environ[ENVIRON_KEY].send(body["message"])
    return JsonResponse({"reply": reply, "pid": os.getpid()})


urlpatterns = [path("chat", chat)]

manager = SessionManager(
    offline_agent_factory(os.environ.get("AGENTSESSION_FAMILY")),  # the offline model of any family
    os.environ.get("AGENTSESSION_STORE", "sqlite:///agentsession.db"),
)
application = AgentSessionWSGIMiddleware(
    get_wsgi_application(), manager, secret_key=settings.SECRET_KEY
)

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
