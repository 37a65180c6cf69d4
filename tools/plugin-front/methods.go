package main

import "strings"

// Which calls a port serves. A plugin's go-plugin server also carries go-plugin's own
// services, which only the plugin's host may use over its private channel:
//
//	/plugin.GRPCController/Shutdown      stops the plugin
//	/plugin.GRPCStdio/StreamStdio        takes its stdout and stderr (only one reader)
//	/plugin.GRPCBroker/StartStream       go-plugin's sub-connection broker
//	/grpc.reflection.v1(alpha).ServerReflection/ServerReflectionInfo
//
// They are refused with UNIMPLEMENTED, which is what go-plugin's client (v1.8.0, the one
// Grafana's SDK uses) expects from a plugin that lacks them, so a Grafana whose go-plugin
// client dials one of our ports carries on:
//   - grpc_stdio.go, newGRPCStdioClient: a StreamStdio error whose code is Unavailable or
//     Unimplemented means "stdio service not available" (logged as a warning, no error), and
//     grpcStdioClient.Run stops its receive loop quietly on Unimplemented too (the error of a
//     server-streaming call usually shows on the first Recv, not on the call itself);
//   - grpc_client.go, newGRPCClient: the broker's StartStream runs as
//     `go func() { _ = brokerGRPCClient.StartStream() }()`, its error ignored;
//   - grpc_client.go, GRPCClient.Close: `_, _ = c.controller.Shutdown(...)`, error ignored,
//     then the connection is closed. (Grafana's Kill then waits for a process it does not
//     have in locator mode and moves on.)
//
// Allowed: every method of a "pluginv2.*" service (Grafana's backend protocol, including
// services added later) and grpc.health.v1.Health (Check, Watch, List).

const healthService = "grpc.health.v1.Health"

// methodNames are the labels of plugin_operator_front_calls_total; any other allowed method
// counts as "other", so a caller cannot grow the label set.
var methodNames = []string{
	"/pluginv2.Data/QueryData",
	"/pluginv2.Data/QueryChunkedData",
	"/pluginv2.Resource/CallResource",
	"/pluginv2.Diagnostics/CheckHealth",
	"/pluginv2.Diagnostics/CollectMetrics",
	"/pluginv2.Stream/SubscribeStream",
	"/pluginv2.Stream/RunStream",
	"/pluginv2.Stream/PublishStream",
	"/pluginv2.AdmissionControl/ValidateAdmission",
	"/pluginv2.AdmissionControl/MutateAdmission",
	"/pluginv2.ResourceConversion/ConvertObjects",
	"/grpc.health.v1.Health/Check",
	"/grpc.health.v1.Health/Watch",
	"/grpc.health.v1.Health/List",
	"other",
}

// refusedNames are the labels of plugin_operator_front_refused_calls_total.
var refusedNames = []string{
	"plugin.GRPCController",
	"plugin.GRPCStdio",
	"plugin.GRPCBroker",
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
	"other",
}

var (
	methodIndex  = indexOf(methodNames)
	refusedIndex = indexOf(refusedNames)
	otherMethod  = methodIndex["other"]
	otherRefused = refusedIndex["other"]
)

func indexOf(names []string) map[string]int {
	index := make(map[string]int, len(names))
	for i, name := range names {
		index[name] = i
	}
	return index
}

type callKind int

const (
	kindRefused     callKind = iota
	kindPlugin               // a pluginv2 call: balanced on the attach port
	kindHealthCheck          // answered NOT_SERVING locally while draining
	kindHealthWatch          // forwarded, but told NOT_SERVING when draining starts
	kindHealthOther
)

type call struct {
	kind    callKind
	method  int // index into methodNames (allowed calls)
	refused int // index into refusedNames (refused calls)
	service string
}

// classify decides what a port does with a call to the gRPC path `method`
// ("/package.Service/Method"). Paths of any other shape are refused: gRPC servers take the
// service as everything before the last '/', so "/pluginv2.Data/../plugin.GRPCController/
// Shutdown" must not pass for a pluginv2 call.
func classify(method string) call {
	service, name, ok := splitMethod(method)
	if !ok {
		return call{kind: kindRefused, refused: otherRefused, service: method}
	}
	allowed := strings.HasPrefix(service, "pluginv2.") && len(service) > len("pluginv2.")
	kind := kindPlugin
	if service == healthService {
		allowed = true
		switch name {
		case "Check":
			kind = kindHealthCheck
		case "Watch":
			kind = kindHealthWatch
		default:
			kind = kindHealthOther
		}
	}
	if !allowed {
		refused, known := refusedIndex[service]
		if !known {
			refused = otherRefused
		}
		return call{kind: kindRefused, refused: refused, service: service}
	}
	index, known := methodIndex[method]
	if !known {
		index = otherMethod
	}
	return call{kind: kind, method: index, service: service}
}

// splitMethod accepts exactly "/<service>/<method>", both made of letters, digits, '_'
// and (in the service) '.'.
func splitMethod(method string) (service, name string, ok bool) {
	rest, found := strings.CutPrefix(method, "/")
	if !found {
		return "", "", false
	}
	service, name, found = strings.Cut(rest, "/")
	if !found || !identifier(service, true) || !identifier(name, false) {
		return "", "", false
	}
	return service, name, true
}

func identifier(text string, dots bool) bool {
	if text == "" || text[0] == '.' || text[len(text)-1] == '.' {
		return false
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case c == '.' && dots:
		default:
			return false
		}
	}
	return true
}
