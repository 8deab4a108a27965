"""Completeness of the provider error mapping (in the spirit of httpx's
``test_httpcore_all_exceptions_mapped``).

For each SDK, every exception class it exports is listed here with the radium error it must
become. A new SDK release that adds an exception class fails these tests until someone
decides, on purpose, what it means for a retry. Status-carrying classes are checked against
the status rule, written here independently of the implementation.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from radium import errors
from radium.engines._common import ProviderContext, error_for_status, transport_error

SECRET = "sk-test-SECRET-1234567890"
CTX = ProviderContext(
    engine="test",
    base_url="http://127.0.0.1:1/v1",
    model="m",
    key_env="TEST_API_KEY",
    agent_id="a",
    secrets=(SECRET,),
)

RECOVERABLE = errors.ErrorCategory.RECOVERABLE
FATAL = errors.ErrorCategory.FATAL


def expected_for_status(status: int) -> type[errors.RadiumError]:
    """The documented rule (SPEC section 4), independent of the code under test."""
    if status == 429:
        return errors.RateLimitError
    if status in (408, 409, 499) or 500 <= status <= 599:
        return errors.ServerError
    if status in (401, 403):
        return errors.AuthenticationError
    if status == 404:
        return errors.ModelNotFoundError
    if 400 <= status <= 499:
        return errors.BadRequestError
    return errors.ModelExecutionError


def _exception_classes(*modules, use_dir: bool = False) -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in modules:
        # the exported names (``__all__``); for openai ``dir()`` would load every lazy submodule
        names = set(getattr(module, "__all__", None) or dir(module))
        if use_dir:
            names |= set(dir(module))
        for name in sorted(names):
            obj = getattr(module, name, None)
            if not name.startswith("_") and isinstance(obj, type) and issubclass(obj, BaseException):
                found[obj.__name__] = obj
    return found


def _httpx2():
    import httpx2

    return httpx2


def _request():
    httpx2 = _httpx2()
    return httpx2.Request("POST", "http://127.0.0.1:1/v1/x")


def _response(status: int, body: dict | None = None, headers: dict | None = None):
    httpx2 = _httpx2()
    return httpx2.Response(status, json=body or {"error": {"message": f"m {SECRET}"}}, headers=headers, request=_request())


# ------------------------------------------------------------------ the status rule


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 405, 408, 409, 413, 422, 429, 431, 451, 499,
                                    500, 501, 502, 503, 504, 529, 599, 302, 600])
def test_status_rule(status):
    err = error_for_status(CTX, status, detail=f"echo {SECRET}")
    assert type(err) is expected_for_status(status)
    assert SECRET not in str(err)
    assert f"HTTP {status}" in err.message and CTX.base_url in err.message
    if isinstance(err, (errors.ServerError, errors.BadRequestError, errors.AuthenticationError)):
        assert err.status == status


def test_status_rule_categories():
    assert error_for_status(CTX, 429).category is RECOVERABLE
    assert error_for_status(CTX, 529).category is RECOVERABLE
    assert error_for_status(CTX, 401).category is FATAL
    assert error_for_status(CTX, 404).category is FATAL
    assert error_for_status(CTX, 429, quota_exhausted=True).category is FATAL


def test_retry_after_headers_feed_retry_after():
    httpx2 = _httpx2()
    assert error_for_status(CTX, 429, headers=httpx2.Headers({"Retry-After": "7"})).retry_after == 7.0
    assert error_for_status(CTX, 503, headers=httpx2.Headers({"retry-after-ms": "250"})).retry_after == 0.25
    assert error_for_status(CTX, 429, headers=httpx2.Headers({"Retry-After": "soon"})).retry_after is None


def test_auth_hint_names_the_variable():
    assert "TEST_API_KEY" in error_for_status(CTX, 401).hint


def test_messages_never_contain_the_key_even_in_the_url():
    ctx = ProviderContext(engine="t", base_url=f"http://h/v1?key={SECRET}", model="m", secrets=(SECRET,))
    for status in (400, 401, 429, 500):
        assert SECRET not in str(error_for_status(ctx, status, detail=SECRET))


# ------------------------------------------------------------------ transport exceptions (httpx2)

HTTPX2_EXPECTED = {
    "HTTPError": errors.ModelExecutionError,
    "RequestError": errors.ModelExecutionError,
    "TransportError": errors.ConnectionFailedError,
    "TimeoutException": errors.ModelTimeoutError,
    "ConnectTimeout": errors.ModelTimeoutError,
    "ReadTimeout": errors.ModelTimeoutError,
    "WriteTimeout": errors.ModelTimeoutError,
    "PoolTimeout": errors.ModelTimeoutError,
    "NetworkError": errors.ConnectionFailedError,
    "ConnectError": errors.ConnectionFailedError,
    "ReadError": errors.ConnectionFailedError,
    "WriteError": errors.ConnectionFailedError,
    "CloseError": errors.ConnectionFailedError,
    "ProtocolError": errors.ConnectionFailedError,
    "LocalProtocolError": errors.ConnectionFailedError,
    "RemoteProtocolError": errors.ConnectionFailedError,
    "ProxyError": errors.ConnectionFailedError,
    "UnsupportedProtocol": errors.ConnectionFailedError,
    "SSEError": errors.ConnectionFailedError,
    "DecodingError": errors.ModelExecutionError,
    "TooManyRedirects": errors.ModelExecutionError,
    "HTTPStatusError": errors.ModelExecutionError,
    "InvalidURL": errors.ModelExecutionError,
    "CookieConflict": errors.ModelExecutionError,
    "StreamError": errors.ModelExecutionError,
    "StreamConsumed": errors.ModelExecutionError,
    "StreamClosed": errors.ModelExecutionError,
    "ResponseNotRead": errors.ModelExecutionError,
    "RequestNotRead": errors.ModelExecutionError,
}


def _make_httpx2(cls):
    httpx2 = _httpx2()
    if issubclass(cls, httpx2.HTTPStatusError):
        return cls("m", request=_request(), response=_response(500))
    for args in (("m",), ()):
        try:
            return cls(*args)
        except TypeError:
            continue
    raise AssertionError(f"cannot build {cls}")


def test_every_httpx2_exception_is_mapped_on_purpose():
    """google-genai lets raw httpx2 errors through; the OpenAI/Anthropic SDKs wrap them."""
    from radium.engines.gemini import map_gemini_exception

    classes = _exception_classes(_httpx2())
    assert set(classes) == set(HTTPX2_EXPECTED), "httpx2 exception classes changed: decide how to map them"
    for name, cls in classes.items():
        mapped = map_gemini_exception(_make_httpx2(cls), CTX)
        assert type(mapped) is HTTPX2_EXPECTED[name], name


def test_builtin_timeout_and_connection_errors():
    assert type(transport_error(CTX, TimeoutError())) is errors.ModelTimeoutError
    assert type(transport_error(CTX, ConnectionResetError())) is errors.ConnectionFailedError
    assert type(transport_error(CTX, ConnectionRefusedError())) is errors.ConnectionFailedError
    assert transport_error(CTX, ValueError("x")) is None


# ------------------------------------------------------------------ openai

OPENAI_EXPECTED: dict[str, type[errors.RadiumError] | str] = {
    "OpenAIError": errors.ModelExecutionError,
    "APIError": errors.ModelExecutionError,
    "APIStatusError": "status",
    "APITimeoutError": errors.ModelTimeoutError,
    "APIConnectionError": errors.ConnectionFailedError,
    "APIResponseValidationError": errors.ModelExecutionError,
    "BadRequestError": "status",
    "AuthenticationError": "status",
    "OAuthError": "status",
    "PermissionDeniedError": "status",
    "NotFoundError": "status",
    "ConflictError": "status",
    "UnprocessableEntityError": "status",
    "RateLimitError": "status",
    "InternalServerError": "status",
    "LengthFinishReasonError": errors.BadRequestError,  # deterministic: raise max_tokens
    "ContentFilterFinishReasonError": errors.BadRequestError,  # deterministic: rephrase
    # not raised by chat completions; unclassified (recoverable) on purpose
    "InvalidWebhookSignatureError": errors.ModelExecutionError,
    "SubjectTokenProviderError": errors.ModelExecutionError,
    "WebSocketConnectionClosedError": errors.ModelExecutionError,
    "WebSocketQueueFullError": errors.ModelExecutionError,
}


def _make_openai(cls):
    import openai

    if issubclass(cls, openai.APIStatusError):
        status = getattr(cls, "status_code", None)
        status = status if isinstance(status, int) else 500
        response = _response(status)
        if cls is openai.OAuthError:
            return cls(response=response, body={"error": "invalid_grant"}), status
        return cls(f"Error code: {status} - {SECRET}", response=response, body={"message": SECRET}), status
    if issubclass(cls, openai.APITimeoutError):
        return cls(_request()), None
    if issubclass(cls, openai.APIConnectionError):
        return cls(request=_request()), None
    if issubclass(cls, openai.APIResponseValidationError):
        return cls(_response(200), None), None
    if issubclass(cls, openai.APIError):
        return cls("m", _request(), body=None), None
    if cls is openai.LengthFinishReasonError:
        from openai.types.chat import ChatCompletion

        return cls(completion=ChatCompletion.model_construct(usage=None)), None
    if cls is openai.ContentFilterFinishReasonError:
        return cls(), None
    if cls.__name__ == "WebSocketConnectionClosedError":
        return cls("closed", unsent_messages=[]), None
    return cls("m"), None


def test_every_openai_exception_is_mapped_on_purpose():
    import openai
    import openai._exceptions
    from radium.engines.openai import map_openai_exception

    classes = _exception_classes(openai, openai._exceptions)
    classes = {n: c for n, c in classes.items() if c.__module__.startswith("openai")}
    assert set(classes) == set(OPENAI_EXPECTED), "openai exception classes changed: decide how to map them"
    for name, cls in classes.items():
        exc, status = _make_openai(cls)
        mapped = map_openai_exception(exc, CTX)
        expected = OPENAI_EXPECTED[name]
        if expected == "status":
            expected = expected_for_status(status)
        assert type(mapped) is expected, name
        assert SECRET not in str(mapped)


def test_openai_generic_status_error_and_5xx_variants():
    import openai
    from radium.engines.openai import map_openai_exception

    for status in (418, 500, 502, 503, 504, 529):
        exc = openai.APIStatusError("m", response=_response(status), body=None)
        assert type(map_openai_exception(exc, CTX)) is expected_for_status(status)
    exc = openai.InternalServerError("m", response=_response(529, headers={"retry-after": "3"}), body=None)
    mapped = map_openai_exception(exc, CTX)
    assert mapped.status == 529 and mapped.retry_after == 3.0


def test_openai_insufficient_quota_is_fatal():
    import openai
    from radium.engines.openai import map_openai_exception

    exc = openai.RateLimitError("m", response=_response(429), body={"code": "insufficient_quota", "message": "q"})
    mapped = map_openai_exception(exc, CTX)
    assert type(mapped) is errors.BadRequestError and mapped.category is FATAL


def test_unknown_exceptions_become_model_execution_errors():
    from radium.engines.anthropic import map_anthropic_exception
    from radium.engines.gemini import map_gemini_exception
    from radium.engines.openai import map_openai_exception

    for mapper in (map_openai_exception, map_anthropic_exception, map_gemini_exception):
        mapped = mapper(KeyError(f"weird {SECRET}"), CTX)
        assert type(mapped) is errors.ModelExecutionError and SECRET not in str(mapped)
        already = errors.RateLimitError("x")
        assert mapper(already, CTX) is already


# ------------------------------------------------------------------ anthropic

ANTHROPIC_EXPECTED_NON_STATUS: dict[str, type[errors.RadiumError]] = {
    "AnthropicError": errors.ModelExecutionError,
    "APIError": errors.ModelExecutionError,
    "APIConnectionError": errors.ConnectionFailedError,
    "APITimeoutError": errors.ModelTimeoutError,
    "APIResponseValidationError": errors.ModelExecutionError,
    "APIWebhookValidationError": errors.ModelExecutionError,
    "RetryableError": errors.ModelExecutionError,  # the SDK's own "please retry"
    "CredentialsError": errors.MissingConfigurationError,
    "IdentityTokenFileError": errors.MissingConfigurationError,
    "WorkloadIdentityError": errors.ModelExecutionError,  # not on an api-key path
}
# APIStatusError subclasses that do not follow the plain status rule, on purpose:
ANTHROPIC_STATUS_OVERRIDES: dict[str, type[errors.RadiumError]] = {
    "ContractSpendLimitReachedError": errors.BadRequestError,  # 429, but a spent budget
    "EnforcedSpendLimitReachedError": errors.BadRequestError,
}


def _anthropic_classes():
    import anthropic
    from anthropic import _error_classes

    classes = _exception_classes(anthropic, use_dir=True)
    for cls in _error_classes.ERROR_CLASSES.values():
        classes[cls.__name__] = cls
    return {n: c for n, c in classes.items() if c.__module__.startswith("anthropic")}


def _anthropic_status(cls) -> int:
    import anthropic
    from anthropic import _error_classes

    for (status, _code), known in _error_classes.ERROR_CLASSES.items():
        if known is cls:
            return status
    status = getattr(cls, "status_code", None)
    if isinstance(status, int):
        return status
    return 500 if issubclass(cls, anthropic.InternalServerError) else 418


def test_every_anthropic_exception_is_mapped_on_purpose():
    import anthropic
    from radium.engines.anthropic import map_anthropic_exception

    classes = _anthropic_classes()
    non_status = {n for n, c in classes.items() if not issubclass(c, anthropic.APIStatusError)}
    assert non_status == set(ANTHROPIC_EXPECTED_NON_STATUS), "anthropic exception classes changed"
    assert set(ANTHROPIC_STATUS_OVERRIDES) <= set(classes)
    checked = 0
    for name, cls in classes.items():
        if issubclass(cls, anthropic.APIStatusError):
            status = _anthropic_status(cls)
            exc = cls(f"Error code: {status}", response=_response(status), body={"error": {"message": SECRET}})
            expected = ANTHROPIC_STATUS_OVERRIDES.get(name) or expected_for_status(status)
        elif issubclass(cls, anthropic.APITimeoutError):
            exc, expected = cls(_request()), ANTHROPIC_EXPECTED_NON_STATUS[name]
        elif issubclass(cls, anthropic.APIConnectionError):
            exc, expected = cls(request=_request()), ANTHROPIC_EXPECTED_NON_STATUS[name]
        elif issubclass(cls, anthropic.APIResponseValidationError):
            exc, expected = cls(_response(200), None), ANTHROPIC_EXPECTED_NON_STATUS[name]
        elif issubclass(cls, anthropic.APIError):
            exc, expected = cls("m", _request(), body=None), ANTHROPIC_EXPECTED_NON_STATUS[name]
        else:
            exc, expected = cls("m"), ANTHROPIC_EXPECTED_NON_STATUS[name]
        mapped = map_anthropic_exception(exc, CTX)
        assert type(mapped) is expected, name
        assert SECRET not in str(mapped)
        checked += 1
    assert checked > 40  # the SDK has dozens of error-code classes, all covered


def test_anthropic_overloaded_and_retry_after():
    import anthropic
    from radium.engines.anthropic import map_anthropic_exception

    exc = anthropic.OverloadedError("m", response=_response(529, headers={"retry-after-ms": "1200"}), body=None)
    mapped = map_anthropic_exception(exc, CTX)
    assert type(mapped) is errors.ServerError and mapped.status == 529 and mapped.retry_after == 1.2


# ------------------------------------------------------------------ google-genai

GENAI_EXPECTED: dict[str, type[errors.RadiumError] | str] = {
    "APIError": "status",
    "ClientError": "status",
    "ServerError": "status",
    "UnknownApiResponseError": errors.ModelExecutionError,
    "UnknownFunctionCallArgumentError": errors.ModelExecutionError,  # no tools are sent
    "UnsupportedFunctionError": errors.ModelExecutionError,
    "FunctionInvocationError": errors.ModelExecutionError,
    "ContinuationInterruptedError": errors.ModelExecutionError,  # interactions API, unused
    "ExperimentalWarning": errors.ModelExecutionError,  # a warning class, never raised
}


def test_every_genai_exception_is_mapped_on_purpose():
    from google.genai import errors as genai_errors
    from radium.engines.gemini import map_gemini_exception

    classes = _exception_classes(genai_errors)
    classes = {n: c for n, c in classes.items() if c.__module__.startswith("google.genai")}
    assert set(classes) == set(GENAI_EXPECTED), "google-genai exception classes changed"
    for name, cls in classes.items():
        expected = GENAI_EXPECTED[name]
        if expected == "status":
            codes = {"ClientError": (400, 401, 403, 404, 408, 409, 422, 429),
                     "ServerError": (500, 502, 503, 504, 529),
                     "APIError": (302, 429, 503)}[name]
            for code in codes:
                body = {"error": {"code": code, "message": SECRET, "status": "X"}}
                exc = cls(code, body, _response(code, body))
                mapped = map_gemini_exception(exc, CTX)
                assert type(mapped) is expected_for_status(code), (name, code)
                assert SECRET not in str(mapped)
        else:
            mapped = map_gemini_exception(cls("m"), CTX)
            assert type(mapped) is expected, name


def test_genai_error_without_a_code_is_unclassified():
    from google.genai import errors as genai_errors
    from radium.engines.gemini import map_gemini_exception

    exc = genai_errors.APIError(0, {"message": "websocket closed"}, None)
    assert type(map_gemini_exception(exc, CTX)) is errors.ModelExecutionError


def test_genai_retry_info_and_bad_key_reason():
    from google.genai import errors as genai_errors
    from radium.engines.gemini import map_gemini_exception

    body = {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}}
    mapped = map_gemini_exception(genai_errors.ClientError(429, body, _response(429, body)), CTX)
    assert type(mapped) is errors.RateLimitError and mapped.retry_after == 12.0
    # a Retry-After header wins over the body
    mapped = map_gemini_exception(
        genai_errors.ClientError(429, body, _response(429, body, headers={"Retry-After": "3"})), CTX
    )
    assert mapped.retry_after == 3.0
    body = {"error": {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}
    mapped = map_gemini_exception(genai_errors.ClientError(400, body, _response(400, body)), CTX)
    assert type(mapped) is errors.AuthenticationError and "TEST_API_KEY" in mapped.hint


# ------------------------------------------------------------------ lazy imports


@pytest.mark.parametrize(
    "module,sdk",
    [
        ("radium.engines.openai", "openai"),
        ("radium.engines.anthropic", "anthropic"),
        ("radium.engines.gemini", "google.genai"),
        ("radium.engines.command", "openai"),
    ],
)
def test_engine_modules_do_not_import_their_sdk(module, sdk):
    code = f"import sys, {module}; sys.exit(1 if {sdk!r} in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
