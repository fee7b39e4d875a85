"""``Attributes``: one request through SREG and AX, one merged answer, whichever the OP
speaks. OPs are python3-openid's, configured to answer SREG only, AX only, or both."""

from __future__ import annotations

import json

import pytest
from openid.extensions import ax as op_ax
from openid.extensions import sreg as op_sreg
from test_sreg import V1, build_request, extension_response, op_answer, parse

from openid_plugins.errors import ConfigurationError
from openid_plugins.extensions import ax, mapping, sreg
from openid_plugins.extensions.ax import AX
from openid_plugins.extensions.mapping import Attributes
from openid_plugins.extensions.sreg import SReg
from openid_plugins.manager import make_plugin_manager, plugin_infos

WISH = Attributes(required=["email"], optional=["nickname", "fullname"])


def answer_with(sreg_data: dict | None, ax_data: dict | None):
    """An OP that answers SREG and/or AX with this data, each only if it was asked."""

    def extend(checkid, answer):
        if sreg_data is not None:
            request = op_sreg.SRegRequest.fromOpenIDRequest(checkid)
            answer.addExtension(op_sreg.SRegResponse.extractResponse(request, sreg_data))
        if ax_data is not None:
            request = op_ax.FetchRequest.fromOpenIDRequest(checkid)
            response = op_ax.FetchResponse(request=request)
            for uri, values in ax_data.items():
                if uri in request:
                    response.setValues(uri, values)
            answer.addExtension(response)

    return extend


def login(extend, wish=WISH, endpoint=None, plugins=(mapping,)) -> dict:
    kwargs = {"endpoint": endpoint} if endpoint else {}
    message = op_answer(build_request([wish], plugins=plugins, **kwargs), extend)
    return parse(extension_response(message, extensions=[wish], **kwargs), plugins=plugins)


def test_invalid_requests_are_configuration_errors():
    for kwargs in ({}, {"required": ["shoe_size"]}, {"optional": "email"}):
        with pytest.raises(ConfigurationError):
            Attributes(**kwargs)


def test_session_record_is_json():
    stored = json.loads(json.dumps(WISH.to_session()))
    assert stored == {
        "extension": "attributes",
        "required": ["email"],
        "optional": ["nickname", "fullname"],
    }


def test_one_request_asks_through_sreg_and_ax():
    message = build_request([WISH])
    assert message.get_args(sreg.SREG_1_1_NS) == {
        "required": "email",
        "optional": "nickname,fullname",
    }
    ax_args = message.get_args(ax.AX_NS)
    assert ax_args["required"] == "email"
    assert ax_args["if_available"] == "nickname,fullname,first,last"
    assert ax_args["type.nickname"] == AX.nickname


def test_explicit_sreg_and_ax_merge_into_the_same_namespaces():
    message = build_request(
        [WISH, SReg(required=["nickname"], optional=["dob"]), AX(optional=["country"])]
    )
    assert message.get_args(sreg.SREG_1_1_NS) == {
        "required": "email,nickname",
        "optional": "fullname,dob",
    }
    assert message.get_args(ax.AX_NS)["if_available"] == "nickname,fullname,first,last,country"
    assert sum(1 for key in message.fields if key.startswith("ns.")) == 2


def test_sreg_only_op():
    data = {"email": "alice@example.com", "nickname": "alice", "fullname": "Alice Liddell"}
    result = login(answer_with(data, None))
    assert result["attributes"] == data
    assert result["sreg"] == data
    assert "ax" not in result  # the site asked for Attributes, not AX


def test_ax_only_op_with_first_and_last_names_like_google():
    data = {AX.email: ["alice@example.com"], AX.first: ["Alice"], AX.last: ["Liddell"]}
    result = login(answer_with(None, data))
    assert result["attributes"] == {"email": "alice@example.com", "fullname": "Alice Liddell"}


def test_sreg_wins_when_both_answer():
    result = login(
        answer_with(
            {"email": "sreg@example.com"},
            {AX.email: ["ax@example.com"], AX.nickname: ["alice"], AX.fullname: ["A. L."]},
        )
    )
    assert result["attributes"] == {
        "email": "sreg@example.com",
        "nickname": "alice",
        "fullname": "A. L.",
    }


def test_only_asked_and_signed_fields_are_merged():
    extend = answer_with({"email": "alice@example.com", "nickname": "alice"}, None)
    message = op_answer(build_request([WISH]), extend)
    message.fields["sreg.fullname"] = "Injected"
    response = extension_response(message, extensions=[Attributes(required=["email", "fullname"])])
    assert parse(response, plugins=[mapping])["attributes"] == {"email": "alice@example.com"}


def test_openid1_op_answers_through_sreg_only():
    data = {"email": "alice@example.com", "nickname": "alice"}
    result = login(answer_with(data, None), endpoint=V1)
    assert result["attributes"] == data


def test_mapping_is_opt_in():
    assert "mapping" not in {info.name for info in plugin_infos(make_plugin_manager())}
    result = login(answer_with({"email": "a@example.com"}, None), plugins=())
    assert "attributes" not in result
    assert result["sreg"] == {"email": "a@example.com"}


def test_nothing_when_attributes_were_not_asked():
    message = op_answer(build_request([SReg(required=["email"])]), answer_with({}, None))
    response = extension_response(message, extensions=[SReg(required=["email"])])
    assert "attributes" not in parse(response, plugins=[mapping])
