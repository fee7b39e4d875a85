"""The test site: a login view starting the sign-in, and the view the OP sends the user back to.

Exceptions are not caught: Django's test client re-raises them, so tests see the typed errors.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from openid_plugins_django.auth import preAuthenticate

#: Settings of the test OpenID sign-ins, per test: preAuthenticate keyword arguments.
LOGIN_OPTIONS: dict = {}


def login(request: HttpRequest) -> HttpResponse:
    answer_url = request.build_absolute_uri("/finish/") + request.GET.get("answer_query", "")
    return preAuthenticate(request.GET["openid"], answer_url, request=request, **LOGIN_OPTIONS)


@csrf_exempt  # the OP may answer by form POST (5.2.2); the assertion is signed and bound
def finish(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, openidrequest=request)
    if user is None:
        return JsonResponse({"user": None}, status=403)
    return JsonResponse(
        {
            "anonymous": user.is_anonymous,
            "username": user.get_username(),
            "pk": user.pk,
            "claim": user.openid_claim,
            "sreg": user.openid_sreg,
            "ax": dict(user.openid_ax),
        }
    )


urlpatterns = [path("login/", login), path("finish/", finish)]
