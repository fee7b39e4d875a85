"""The test site: a login view starting the sign-in, and the view the OP sends the user back to.

Exceptions are not caught there: Django's test client re-raises them, so tests see the typed
errors. Under ``readme/`` the site serves the views of the README's "Views" section, run from
the README's text itself, so the README's code is what is tested.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

from django.contrib import admin
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


def readme_views() -> ModuleType:
    """The README's ``# views.py`` block, executed as a module."""
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(# views\.py\n.*?)```", text, re.S)
    assert code is not None, "README.md has no views.py block"
    module = ModuleType("readme_views")
    exec(compile(code.group(1), "README.md#views.py", "exec"), module.__dict__)  # noqa: S102
    return module


def register(request: HttpRequest) -> HttpResponse:
    return JsonResponse(request.session["openid_new_claim"])


views = readme_views()
urlpatterns = [
    path("login/", login),
    path("finish/", finish),
    path("readme/login/", views.openid_start, name="openid_start"),
    path("readme/openid/return/", views.openid_return, name="openid_return"),
    path("readme/register/", register, name="register"),
    path("admin/", admin.site.urls),
]
