"""Django (through the WSGI middleware) + agentsession, in one file: ``python examples/django_app.py runserver``."""

import json
import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("SECRET_KEY", "change me"),
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    WSGI_APPLICATION=f"{__name__}.application",
)

from agentsession import SessionManager  # noqa: E402
from agentsession.adapters.wsgi import ENVIRON_KEY, AgentSessionWSGIMiddleware  # noqa: E402
from agentsession.offline import offline_agent_factory  # noqa: E402


@csrf_exempt  # an API endpoint; the SameSite=Lax cookie keeps other sites from posting with it
def chat(request):
    session = request.environ[ENVIRON_KEY]
    reply = session.send(json.loads(request.body)["message"])
    return JsonResponse({"reply": reply, "pid": os.getpid()})


urlpatterns = [path("chat", chat)]

manager = SessionManager(
    offline_agent_factory(os.environ.get("AGENTSESSION_FAMILY")),  # the offline model of any family
    os.environ.get("AGENTSESSION_STORE", "sqlite:///agents.db"),
)
application = AgentSessionWSGIMiddleware(
    get_wsgi_application(), manager, secret_key=settings.SECRET_KEY
)

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
