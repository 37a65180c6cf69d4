import grpc

from plugin_operator.protocol import convert
from plugin_operator.protocol.errors import error_source_from_trailers, status_details
from plugin_operator.protocol.frames import Field, FieldType, Frame
from plugin_operator.protocol.models import (
    DataQuery,
    DataResponse,
    DataSourceInstanceSettings,
    ErrorSource,
    FrameFormat,
    PluginContext,
    QueryDataRequest,
    QueryDataResponse,
    User,
)


def test_request_round_trip_through_protobuf() -> None:
    ctx = PluginContext(org_id=1, plugin_id="p", user=User("l", "n", "e", "Admin"),
                        datasource_instance_settings=DataSourceInstanceSettings(
                            id=7, uid="u", json_data=b'{"a":1}',
                            decrypted_secure_json_data={"k": "v"}, last_updated_ms=-6795364578871),
                        grafana_config={"GF_X": "1"}, namespace="ns")
    request = QueryDataRequest(ctx, [DataQuery("A", json=b'{"q":1}')], {"http_X": "y"},
                               FrameFormat.JSON)
    message = convert.query_data_request_to_proto(request)
    assert convert.query_data_request_from_proto(message) == request


def test_response_encodes_frames_in_the_requested_format_and_defaults_status() -> None:
    frame = Frame("f", [Field.of("v", FieldType.INT64, [1])])
    response = QueryDataResponse({"A": DataResponse([frame]),
                                  "B": DataResponse(error="boom",
                                                    error_source=ErrorSource.DOWNSTREAM)})
    message = convert.query_data_response_to_proto(response, FrameFormat.JSON)
    assert message.responses["A"].frames[0].startswith(b'{"schema"')
    assert message.responses["A"].status == 200
    assert message.responses["A"].format == FrameFormat.JSON
    assert message.responses["B"].status == 500
    assert message.responses["B"].errorSource == "downstream"
    decoded = convert.query_data_response_from_proto(message)
    assert decoded.responses["A"].frames[0].ref_id == "A"
    assert decoded.responses["A"].frames[0].field("v").to_pylist() == [1]


def test_error_source_survives_the_status_details_trailer() -> None:
    details = status_details(grpc.StatusCode.UNKNOWN, "x", ErrorSource.DOWNSTREAM)
    trailers = (("grpc-status-details-bin", details),)
    assert error_source_from_trailers(trailers) is ErrorSource.DOWNSTREAM
    assert error_source_from_trailers((("grpc-status-details-bin", b"\xff\xff"),)) is None
    assert error_source_from_trailers(None) is None
