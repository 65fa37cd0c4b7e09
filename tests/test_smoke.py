from tests.support.moto import MotoSandbox


def test_moto_server_maps_a_new_key_to_its_user(sandbox: MotoSandbox) -> None:
    key = sandbox.create_user("alice", path="/ci/", keys=1)[0]
    arn = sandbox.caller_arn(key["AccessKeyId"], key["SecretAccessKey"])
    assert arn.endswith(":user/ci/alice")
