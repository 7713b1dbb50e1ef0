"""Callback URLs: only http(s) to public addresses, unless private targets are allowed (no Redis)."""

from __future__ import annotations

import pytest

from worker import errors
from worker.callbacks import MAX_URL_LENGTH, UrlChecker, check_callback_url, resolve_target
from worker.errors import InvalidRequestError


def resolver(table: dict[str, list[str]]) -> object:
    """A stand-in DNS: names in ``table`` resolve to its addresses, others do not resolve."""
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def refusal(url: object, *, allow_private: bool = False, resolve: object = None) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        if resolve is None:
            check_callback_url(url, allow_private=allow_private)
        else:
            check_callback_url(url, allow_private=allow_private, resolve=resolve)  # type: ignore[arg-type]
    err = info.value
    assert err.field == "CallbackUrl" and err.code == errors.CALLBACK_URL_REFUSED
    return err


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://203.0.113.9/cb", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("https://", "must have a host"),
        ("https://user:pw@93.184.216.34/cb", "user name or password"),
        ("https://93.184.216.34:99999/cb", "not a valid URL"),
        ("https://93.184.216.34/a b", "spaces or control"),
        ("", "must not be empty"),
        ("https://93.184.216.34/" + "a" * MAX_URL_LENGTH, f"at most {MAX_URL_LENGTH}"),
    ],
)
def test_a_url_that_is_not_plain_http_or_https_is_refused_naming_the_field_and_code(
    url: str, why: str
) -> None:
    """Other schemes, no host, credentials, bad ports, spaces and overlong URLs are refused."""
    assert why in str(refusal(url))


def test_a_callback_url_that_is_not_a_string_is_refused() -> None:
    """A number or a list where a URL belongs is a clear refusal, not a crash."""
    assert "must be a string" in str(refusal(12345))
    assert "must be a string" in str(refusal(["https://93.184.216.34/"]))


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.5", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("[fe80::1]", "link-local"),
        ("[fd00::1]", "private"),
        ("100.64.0.1", "non-public"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_internal_addresses_are_refused_by_default(host: str, kind: str) -> None:
    """Loopback, private, link-local (cloud metadata), shared and special addresses are refused."""
    err = refusal(f"http://{host}:8080/hook")
    assert kind in str(err)


def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    """The check is on the addresses a name resolves to, every one of them, not on the name."""
    dns = resolver({"hooks.example.com": ["93.184.216.34", "10.0.0.7"], "ok.example.com": ["93.184.216.34"]})
    assert "private" in str(refusal("https://hooks.example.com/cb", resolve=dns))
    assert check_callback_url("https://ok.example.com/cb", allow_private=False, resolve=dns) == (  # type: ignore[arg-type]
        "https://ok.example.com/cb"
    )


def test_a_name_that_does_not_resolve_is_refused() -> None:
    """An unknown host is refused with the host in the reason (the real resolver)."""
    assert "does not resolve" in str(refusal("https://no-such-host.invalid/cb"))


def test_allow_private_lets_loopback_and_private_targets_through_but_not_multicast() -> None:
    """AXB_CALLBACK_ALLOW_PRIVATE=true is for tests and on-premises receivers."""
    assert check_callback_url(" http://127.0.0.1:9000/cb ", allow_private=True) == "http://127.0.0.1:9000/cb"
    assert check_callback_url("http://localhost:9000/cb", allow_private=True) == "http://localhost:9000/cb"
    assert check_callback_url("https://10.0.0.1/cb", allow_private=True) == "https://10.0.0.1/cb"
    assert "multicast" in str(refusal("http://224.0.0.1/cb", allow_private=True))


def test_a_refusal_never_repeats_the_url_path_or_a_phone_number() -> None:
    """The URL may carry personal data: only the host appears in the reason."""
    err = refusal("http://10.0.0.1/trips/13800001234?phone=13900005678")
    assert "13800001234" not in str(err) and "13900005678" not in str(err) and "/trips" not in str(err)


def test_a_public_address_is_accepted_and_the_delivery_connects_to_the_checked_address() -> None:
    """The target pins the address that was checked; Host (and SNI) keep the name."""
    dns = resolver({"hooks.example.com": ["93.184.216.34"]})
    target = resolve_target("https://hooks.example.com/cb?x=1", allow_private=False, resolve=dns)  # type: ignore[arg-type]
    assert target.pinned_url(target.addresses[0]) == "https://93.184.216.34:443/cb?x=1"
    assert target.host_header == "hooks.example.com"
    v6 = resolve_target("http://[2606:2800:220:1::1]:8080/cb", allow_private=False)
    assert (
        v6.pinned_url(v6.addresses[0]) == "http://[2606:2800:220:1::1]:8080/cb"
        and v6.host_header == "[2606:2800:220:1::1]:8080"
    )


def test_a_checker_resolves_each_url_once_and_remembers_refusals() -> None:
    """A batch of binds with one URL costs one DNS look-up."""
    dns = resolver({"ok.example.com": ["93.184.216.34"], "bad.example.com": ["192.168.0.1"]})
    check = UrlChecker(allow_private=False, resolve=dns)  # type: ignore[arg-type]
    for _ in range(3):
        assert check("https://ok.example.com/cb") == "https://ok.example.com/cb"
        with pytest.raises(InvalidRequestError) as info:
            check("https://bad.example.com/cb")
        assert info.value.code == errors.CALLBACK_URL_REFUSED
    assert dns.calls == ["ok.example.com", "bad.example.com"]  # type: ignore[attr-defined]
