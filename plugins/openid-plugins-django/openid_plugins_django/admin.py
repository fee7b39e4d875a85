"""Admin for the claim -> user links: list, search by user or claim, unlink."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import OpenIDClaim


@admin.register(OpenIDClaim)
class OpenIDClaimAdmin(admin.ModelAdmin):
    list_display = ("claim", "user")
    list_select_related = ("user",)
    search_fields = ("claim", f"user__{get_user_model().USERNAME_FIELD}", "user__email")
    raw_id_fields = ("user",)
    fields = ("user", "claim")
    actions = ["unlink"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A link is unlinked and made again, never re-pointed: editing the claim text of an
        # existing link would hand one person's sign-in to whoever owns the new text.
        return ("user", "claim") if obj is not None else ()

    # Django's "Delete selected" does the same; this one says it in the site's words.
    @admin.action(description="Unlink the selected OpenID claims", permissions=["delete"])
    def unlink(self, request: HttpRequest, queryset: QuerySet[OpenIDClaim]) -> None:
        count, _ = queryset.delete()
        self.message_user(request, f"Unlinked {count} OpenID claim(s).", messages.SUCCESS)
