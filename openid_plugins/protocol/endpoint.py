"""What discovery yields: an OP endpoint and the identifiers it serves (OpenID 2.0 7.3.1)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

OPENID_1_0_TYPE = "http://openid.net/signon/1.0"
OPENID_1_1_TYPE = "http://openid.net/signon/1.1"
OPENID_2_0_TYPE = "http://specs.openid.net/auth/2.0/signon"
OPENID_IDP_2_0_TYPE = "http://specs.openid.net/auth/2.0/server"
OPENID_TYPES = (OPENID_IDP_2_0_TYPE, OPENID_2_0_TYPE, OPENID_1_1_TYPE, OPENID_1_0_TYPE)


@dataclass(frozen=True)
class Endpoint:
    """One OpenID service: JSON-serializable, so it can live in a web session."""

    server_url: str
    #: The claimed identifier; None for an OP identifier (directed identity, 7.3.1).
    claimed_id: str | None
    #: The OP-local identifier when it differs from the claimed one (delegation).
    local_id: str | None
    type_uris: tuple[str, ...]
    from_yadis: bool = False

    @property
    def is_op_identifier(self) -> bool:
        return OPENID_IDP_2_0_TYPE in self.type_uris

    @property
    def is_openid2(self) -> bool:
        return OPENID_2_0_TYPE in self.type_uris or self.is_op_identifier

    @property
    def op_local_id(self) -> str | None:
        """The identifier the OP knows the user by (``openid.identity``)."""
        return self.local_id or self.claimed_id

    def supports(self, type_uri: str) -> bool:
        return type_uri in self.type_uris

    def to_dict(self) -> dict:
        data = asdict(self)
        data["type_uris"] = list(self.type_uris)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Endpoint:
        return cls(
            server_url=str(data["server_url"]),
            claimed_id=data.get("claimed_id"),
            local_id=data.get("local_id"),
            type_uris=tuple(data.get("type_uris", ())),
            from_yadis=bool(data.get("from_yadis", False)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))
