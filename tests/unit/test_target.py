import pytest

from netdoctor.errors import UsageError
from netdoctor.model import Kind, Ref
from netdoctor.check.target import parse_source, parse_target


@pytest.mark.parametrize("text,ref", [("web", Ref(Kind.SERVICE, "web")), ("svc/web", Ref(Kind.SERVICE, "web")),
                                      ("pod/a-1", Ref(Kind.POD, "a-1")), ("deploy/api", Ref(Kind.DEPLOYMENT, "api"))])
def test_target_forms(text, ref):
    assert parse_target(text) == ref


@pytest.mark.parametrize("text", ["rs/web", "svc/", "svc/Bad_Name", "a/b/c"])
def test_bad_targets(text):
    with pytest.raises(UsageError):
        parse_target(text)


def test_source_must_name_a_kind():
    assert parse_source("deploy/client") == Ref(Kind.DEPLOYMENT, "client")
    with pytest.raises(UsageError):
        parse_source("client")
