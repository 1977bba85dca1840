"""One error tree: every class its HTTP status and ``ErrorCode``; a stored code maps back to
its class; a code outside the enum is refused where an error is built."""

from __future__ import annotations

import pytest

from worker.core import errors
from worker.core.errors import ErrorCode, ExtworkerError, error_class


def _tree() -> list[type[ExtworkerError]]:
    out, todo = [], [ExtworkerError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def test_every_class_has_a_code_of_the_enum_and_an_http_status():
    for cls in _tree():
        assert isinstance(cls.code, ErrorCode), cls
        assert 300 <= cls.status < 600, cls


def test_a_stored_code_maps_back_to_its_class():
    assert error_class("file_not_found") is errors.FileNotFound
    assert error_class("file_not_found")("x").status == 404
    assert error_class("file_exists").status == 409
    assert error_class("invalid_params") is errors.PermanentError  # no class of its own
    assert error_class("no-such-code") is errors.PermanentError
    assert error_class(None) is errors.PermanentError


def test_a_code_outside_the_enum_is_refused():
    assert errors.PermanentError("x", code="invalid_image").code is ErrorCode.INVALID_IMAGE
    with pytest.raises(ValueError):
        errors.PermanentError("x", code="made_up")


def test_the_errors_that_lived_elsewhere_are_in_the_tree():
    from worker.api.limits import BodyError
    from worker.broker.intake import IntakeFull
    from worker.core.egress import EgressRefused
    from worker.core.jsonlimits import JSONLimitError
    from worker.delivery.transform import TransformError
    from worker.store.files import PathTaken
    from worker.store.search import QueryError

    for cls in (BodyError, IntakeFull, EgressRefused, JSONLimitError, TransformError,
                PathTaken, QueryError):
        assert issubclass(cls, ExtworkerError), cls
    assert BodyError(413, "too big").status == 413
