"""The axschema.org attribute type URIs OPs actually sent (AX 1.0 leaves the types to a
separate schema): data shared by the AX plugin and the opt-in SREG<->AX mapping."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: Short name -> type URI.
SCHEMA: Mapping[str, str] = MappingProxyType(
    {
        "email": "http://axschema.org/contact/email",
        "first": "http://axschema.org/namePerson/first",
        "last": "http://axschema.org/namePerson/last",
        "fullname": "http://axschema.org/namePerson",
        "nickname": "http://axschema.org/namePerson/friendly",
        "country": "http://axschema.org/contact/country/home",
        "language": "http://axschema.org/pref/language",
        "timezone": "http://axschema.org/pref/timezone",
        "dob": "http://axschema.org/birthDate",
        "gender": "http://axschema.org/person/gender",
        "postcode": "http://axschema.org/contact/postalCode/home",
    }
)
