"""The file sink's PEM files: beside the JSON document, for the *current* entry when it
holds a certificate; written atomically with mode 0600; repaired by a replayed promote."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from rotator import crypto
from rotator.model import Kind
from rotator.policy import FileSinkConfig
from rotator.sinks import FileSink, SecretEntry, SinkKey
from rotator.sinks.base import Fence
from rotator.sinks.file_pem import pem_contents, pem_paths
from tests.support.certs import make_ca, make_leaf

KEY = SinkKey(account="123456789012", user="web", kind=Kind.SERVER_CERTIFICATE)

FENCE = Fence(epoch="tests", value=1)


def cert_entry(credential_id: str, *, chain: bool) -> SecretEntry:
    ca = make_ca("CA")
    leaf = make_leaf("web", issuer=ca)
    public = {crypto.CERTIFICATE_BODY: leaf.pem.rstrip("\n")}
    if chain:
        public[crypto.CERTIFICATE_CHAIN] = ca.pem
    return SecretEntry(
        kind=Kind.SERVER_CERTIFICATE,
        credential_id=credential_id,
        created_at=datetime.now(UTC),
        public=public,
        secret={crypto.PRIVATE_KEY: SecretStr(leaf.key_pem)},
    )


@pytest.fixture
def sink(tmp_path: Path) -> FileSink:
    return FileSink(FileSinkConfig(type="file", path=f"{tmp_path}/{{name}}/{{kind}}.json"))


def files(tmp_path: Path) -> dict[str, Path]:
    return pem_paths(tmp_path / "web" / "server-certificate.json")


@pytest.mark.parametrize(
    ("document", "cert"),
    [
        ("/s/web/server-certificate.json", "/s/web/server-certificate.cert.pem"),
        ("/s/web/creds", "/s/web/creds.cert.pem"),
        ("/s/a.b/x.json", "/s/a.b/x.cert.pem"),
    ],
)
def test_pem_files_sit_beside_the_document(document: str, cert: str) -> None:
    paths = pem_paths(Path(document))
    assert str(paths[".cert.pem"]) == cert
    assert str(paths[".key.pem"]) == cert.replace(".cert.pem", ".key.pem")


async def test_promote_writes_the_current_certificate_chain_and_key_0600(
    sink: FileSink, tmp_path: Path
) -> None:
    entry = cert_entry("web-20260301", chain=True)
    await sink.put_pending(KEY, entry, FENCE)
    assert not files(tmp_path)[".cert.pem"].exists(), "pending material gets no PEM files"
    await sink.promote(KEY, "web-20260301", FENCE)
    paths = files(tmp_path)
    assert paths[".cert.pem"].read_text() == entry.public[crypto.CERTIFICATE_BODY] + "\n"
    assert paths[".chain.pem"].read_text() == entry.public[crypto.CERTIFICATE_CHAIN]
    assert paths[".key.pem"].read_text() == entry.reveal(crypto.PRIVATE_KEY)
    for path in paths.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(paths[".cert.pem"].parent.glob(".*.tmp")), "no temporary file left"


async def test_rollback_puts_back_the_previous_files_and_drops_a_chain_it_lacks(
    sink: FileSink, tmp_path: Path
) -> None:
    first, second = cert_entry("web-1", chain=False), cert_entry("web-2", chain=True)
    for entry in (first, second):
        await sink.put_pending(KEY, entry, FENCE)
        await sink.promote(KEY, entry.credential_id, FENCE)
    assert files(tmp_path)[".chain.pem"].exists()
    await sink.rollback(KEY, "web-1", FENCE)
    paths = files(tmp_path)
    assert paths[".key.pem"].read_text() == first.reveal(crypto.PRIVATE_KEY)
    assert not paths[".chain.pem"].exists()


async def test_a_replayed_promote_repairs_files_a_crash_left_stale(
    sink: FileSink, tmp_path: Path
) -> None:
    entry = cert_entry("web-1", chain=True)
    await sink.put_pending(KEY, entry, FENCE)
    await sink.promote(KEY, "web-1", FENCE)
    paths = files(tmp_path)
    paths[".key.pem"].unlink()
    paths[".cert.pem"].write_text("stale")
    await sink.promote(KEY, "web-1", FENCE)  # the document is unchanged: a no-op for it
    assert paths[".key.pem"].read_text() == entry.reveal(crypto.PRIVATE_KEY)
    assert paths[".cert.pem"].read_text().startswith("-----BEGIN CERTIFICATE-----")


async def test_entries_without_a_certificate_leave_pem_files_alone(
    sink: FileSink, tmp_path: Path
) -> None:
    key = SinkKey(account="1", user="web", kind=Kind.SERVER_CERTIFICATE)
    bystander = files(tmp_path)[".cert.pem"]
    bystander.parent.mkdir(parents=True)
    bystander.write_text("someone else's")
    access_key = SecretEntry(
        kind=Kind.ACCESS_KEY,
        credential_id="AKIA1",
        created_at=datetime.now(UTC),
        public={"AccessKeyId": "AKIA1"},
        secret={"SecretAccessKey": SecretStr("s" * 40)},
    )
    assert pem_contents(access_key) is None
    await sink.put_pending(key, access_key, FENCE)
    await sink.promote(key, "AKIA1", FENCE)
    assert bystander.read_text() == "someone else's"
