import pytest

from plugin_operator.protocol.models import (
    AppInstanceSettings,
    DataSourceInstanceSettings,
    PluginContext,
)
from plugin_operator.sdk.instances import InstanceManager, instance_key
from plugin_operator.sdk.serve import Listener, handshake_line, negotiate_version


class Instance:
    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        self.disposed = False

    def dispose(self) -> None:
        self.disposed = True


def ds(updated: int, config: dict[str, str] | None = None) -> PluginContext:
    return PluginContext(plugin_id="p", grafana_config=config or {},
                         datasource_instance_settings=DataSourceInstanceSettings(
                             id=4, last_updated_ms=updated))


def test_keys_follow_the_go_sdk() -> None:
    assert instance_key(ds(1)) == "4##"
    proxy = ds(1, {"GF_SECURE_SOCKS_DATASOURCE_PROXY_CLIENT_KEY_VAL": "abcdefgh"})
    assert instance_key(proxy, "t") == "4#t#efgh"
    app = PluginContext(plugin_id="app", org_id=2, app_instance_settings=AppInstanceSettings())
    assert instance_key(app) == "app#2"
    assert instance_key(app, "t") == "t#app#2"
    with pytest.raises(ValueError, match="neither datasource nor app"):
        instance_key(PluginContext())


async def test_rebuilt_on_change_and_disposed_after_in_flight_calls() -> None:
    manager = InstanceManager(Instance)
    first = await manager.get(ds(1))
    assert await manager.get(ds(1)) is first
    async with manager.use(ds(1)) as in_flight:
        assert in_flight is first
        second = await manager.get(ds(2))
        assert second is not first
        assert not first.disposed  # still serving a call
    assert first.disposed
    third = await manager.get(ds(2, {"GF_X": "1"}))
    assert third is not second
    assert second.disposed
    await manager.dispose_all()
    assert third.disposed


def test_version_negotiation_and_handshake_line() -> None:
    assert negotiate_version({"PLUGIN_PROTOCOL_VERSIONS": "1,2"}) == 2
    assert negotiate_version({"PLUGIN_PROTOCOL_VERSIONS": "1"}) == 2  # host rejects it
    assert handshake_line(2, Listener("unix", "/tmp/p")) == "1|2|unix|/tmp/p|grpc|"
