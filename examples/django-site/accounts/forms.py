"""The login and registration forms."""

from django import forms
from django.contrib.auth import get_user_model
from openid_plugins_django.auth import AX


class OpenIDLoginForm(forms.Form):
    openid = forms.CharField(label="Your OpenID", max_length=2047)


class RegistrationForm(forms.Form):
    """A new account for a verified claim, pre-filled from what the provider sent."""

    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if get_user_model()._default_manager.filter(username__iexact=username).exists():
            raise forms.ValidationError("This user name is taken; choose another.")
        return username

    @staticmethod
    def initial_from(sreg: dict, ax: dict) -> dict[str, str]:
        """SREG and AX values (OpenID Simple Registration 1.0, Attribute Exchange 1.0)."""

        def first(uri: str) -> str:
            return (ax.get(uri) or [""])[0]

        fullname = sreg.get("fullname", "")
        given, _, family = fullname.partition(" ")
        return {
            "username": sreg.get("nickname", ""),
            "email": sreg.get("email") or first(AX.email),
            "first_name": first(AX.first) or given,
            "last_name": first(AX.last) or family,
        }
