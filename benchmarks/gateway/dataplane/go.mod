module plugin-operator.dev/benchmarks/gateway/dataplane

go 1.26.5

require (
	github.com/grafana/grafana-plugin-sdk-go v0.298.0
	google.golang.org/grpc v1.84.0
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260928230214-8a89bd6388cc // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
