// Command query-json prints the body Grafana's /api/ds/query writes for plugin answers:
// it reads QueryDataResponse messages as the gateway receives them from plugins, decodes
// each with the Go SDK exactly as Grafana does (backend.ConvertFromProtobuf) and encodes it
// with the SDK's own JSON encoder, the one Grafana's HTTP API uses.
//
// stdin: a JSON array of cases, each {"refId": {"status", "error", "errorSource",
// "format": "json"|"arrow", "frames": [base64 of each frame]}}. stdout: a JSON array with
// Grafana's body for each case, as a string.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
)

type response struct {
	Status      int32    `json:"status"`
	Error       string   `json:"error"`
	ErrorSource string   `json:"errorSource"`
	Format      string   `json:"format"`
	Frames      []string `json:"frames"`
}

func encode(responses map[string]response) (string, error) {
	message := &pluginv2.QueryDataResponse{Responses: map[string]*pluginv2.DataResponse{}}
	for refID, r := range responses {
		format := pluginv2.DataFrameFormat_ARROW
		if r.Format == "json" {
			format = pluginv2.DataFrameFormat_JSON
		}
		frames := make([][]byte, 0, len(r.Frames))
		for _, encoded := range r.Frames {
			raw, err := base64.StdEncoding.DecodeString(encoded)
			if err != nil {
				return "", err
			}
			frames = append(frames, raw)
		}
		message.Responses[refID] = &pluginv2.DataResponse{
			Status: r.Status, Error: r.Error, ErrorSource: r.ErrorSource, Format: format,
			Frames: frames,
		}
	}
	decoded, err := backend.ConvertFromProtobuf{}.QueryDataResponse(message)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(decoded)
	return string(body), err
}

func main() {
	var cases []map[string]response
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, "query-json: stdin is not a JSON array of cases:", err)
		os.Exit(2)
	}
	bodies := make([]string, 0, len(cases))
	for index, c := range cases {
		body, err := encode(c)
		if err != nil {
			fmt.Fprintf(os.Stderr, "query-json: case %d: %v\n", index, err)
			os.Exit(1)
		}
		bodies = append(bodies, body)
	}
	if err := json.NewEncoder(os.Stdout).Encode(bodies); err != nil {
		os.Exit(1)
	}
}
