"""Sign-in with OpenID: the README's two views, registration for a new claim, and a settings
page that lists and unlinks the user's claims."""

from django.contrib import messages
from django.contrib.auth import authenticate, get_user_model, login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from openid_plugins_django.auth import (
    IncorrectClaimError,
    IncorrectURIError,
    MultipleClaimUsageError,
    OpenIDError,
    getOpenIDs,
    linkOpenID,
    preAuthenticate,
    unlinkOpenID,
)

from . import dev
from .forms import OpenIDLoginForm, RegistrationForm

#: The verified claim waiting for its registration form, in the session.
PENDING = "openid_new_claim"
#: Set while a signed-in user adds another OpenID to their account.
LINKING = "openid_linking"
BACKEND = "openid_plugins_django.auth.Backend"


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")


def _start(request: HttpRequest, form: OpenIDLoginForm, template: str) -> HttpResponse:
    if form.is_valid():
        try:
            return preAuthenticate(
                form.cleaned_data["openid"],
                request.build_absolute_uri(reverse("openid_return")),
                request=request,
            )
        except (IncorrectURIError, IncorrectClaimError) as exc:  # a typo, or no provider
            form.add_error("openid", str(exc))
    return render(request, template, {"form": form, "hint": dev.hint()})


def openid_start(request: HttpRequest) -> HttpResponse:
    request.session.pop(LINKING, None)
    return _start(request, OpenIDLoginForm(request.POST or None), "accounts/login.html")


@csrf_exempt  # the provider may answer with a form POST: signed and bound to this session
def openid_return(request: HttpRequest) -> HttpResponse:
    try:
        user = authenticate(request, openidrequest=request)
    except OpenIDError as exc:
        return render(request, "accounts/failed.html", {"error": exc}, status=403)
    if user is None:
        return render(
            request, "accounts/failed.html", {"error": "This account is disabled."}, status=403
        )
    linking = request.session.pop(LINKING, False)
    if user.is_anonymous and linking and request.user.is_authenticated:
        try:
            linkOpenID(request.user, user.openid_claim)
        except MultipleClaimUsageError as exc:
            return render(request, "accounts/failed.html", {"error": exc}, status=403)
        messages.success(request, f"{user.openid_claim} now signs you in too.")
        return redirect("settings")
    if user.is_anonymous:  # verified, but new here: registration, pre-filled
        request.session[PENDING] = {
            "claim": user.openid_claim,
            "sreg": dict(user.openid_sreg),
            "ax": dict(user.openid_ax),
        }
        return redirect("register")
    login(request, user)
    return redirect("home")


def register(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(PENDING)
    if pending is None:
        return redirect("login")
    initial = RegistrationForm.initial_from(pending["sreg"], pending["ax"])
    form = RegistrationForm(request.POST or None, initial=initial)
    if form.is_valid():
        user = get_user_model()._default_manager.create_user(**form.cleaned_data)
        user.set_unusable_password()  # the OpenID is how this account signs in
        user.save()
        linkOpenID(user, pending["claim"])
        del request.session[PENDING]
        login(request, user, backend=BACKEND)
        messages.success(request, f"Welcome, {user.get_username()}.")
        return redirect("settings")
    return render(request, "accounts/register.html", {"form": form, "claim": pending["claim"]})


@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    context = {"claims": getOpenIDs(request.user), "form": OpenIDLoginForm(), "hint": dev.hint()}
    return render(request, "accounts/settings.html", context)


@login_required
@require_POST
def link_another(request: HttpRequest) -> HttpResponse:
    request.session[LINKING] = True
    return _start(request, OpenIDLoginForm(request.POST), "accounts/settings.html")


@login_required
@require_POST
def unlink(request: HttpRequest) -> HttpResponse:
    claim = request.POST.get("claim", "")
    claims = getOpenIDs(request.user)
    if claim in claims and len(claims) == 1 and not request.user.has_usable_password():
        messages.error(request, "This OpenID is the only way to sign in to your account.")
    elif claim in claims:
        unlinkOpenID(request.user, claim)
        messages.success(request, f"{claim} no longer signs you in.")
    return redirect("settings")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("home")
