// Command frame-json-bench measures how fast the Go SDK encodes a large time series frame
// to Grafana's JSON frame format, the baseline the Python encoder is compared against.
//
//	frame-json-bench [--rows 1000000] [--repeat 3] [--arrow-out f.arrow] [--json-out f.json]
//
// It prints {"rows","bytes","seconds","mbPerSec",...} on stdout. --arrow-out writes the same
// frame as Arrow IPC (Grafana's wire encoding) so another encoder can load the exact frame.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Report is the JSON line printed on stdout.
type Report struct {
	Rows       int       `json:"rows"`
	Bytes      int       `json:"bytes"`
	Seconds    float64   `json:"seconds"`
	MBPerSec   float64   `json:"mbPerSec"`
	RunSeconds []float64 `json:"runSeconds"`
	Encoder    string    `json:"encoder"`
	ArrowBytes int       `json:"arrowBytes,omitempty"`
}

func main() {
	rows := flag.Int("rows", 1_000_000, "rows in the frame")
	repeat := flag.Int("repeat", 3, "encodings to time; the fastest is reported")
	arrowOut := flag.String("arrow-out", "", "also write the frame as Arrow IPC to this file")
	jsonOut := flag.String("json-out", "", "also write the encoded JSON to this file")
	flag.Parse()
	if *rows < 1 || *repeat < 1 {
		fmt.Fprintln(os.Stderr, "frame-json-bench: --rows and --repeat must be at least 1")
		os.Exit(2)
	}
	if err := run(*rows, *repeat, *arrowOut, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "frame-json-bench:", err)
		os.Exit(1)
	}
}

func run(rows, repeat int, arrowOut, jsonOut string) error {
	frame := timeSeries(rows)
	report := Report{Rows: rows, Encoder: "grafana-plugin-sdk-go data.FrameToJSON"}
	var encoded []byte
	for range repeat {
		start := time.Now()
		b, err := data.FrameToJSON(frame, data.IncludeAll)
		elapsed := time.Since(start).Seconds()
		if err != nil {
			return fmt.Errorf("encoding the frame to JSON: %w", err)
		}
		encoded = b
		report.RunSeconds = append(report.RunSeconds, elapsed)
		if report.Seconds == 0 || elapsed < report.Seconds {
			report.Seconds = elapsed
		}
	}
	report.Bytes = len(encoded)
	report.MBPerSec = float64(report.Bytes) / 1e6 / report.Seconds
	if jsonOut != "" {
		if err := os.WriteFile(jsonOut, encoded, 0o644); err != nil {
			return err
		}
	}
	if arrowOut != "" {
		b, err := frame.MarshalArrow()
		if err != nil {
			return fmt.Errorf("encoding the frame to Arrow: %w", err)
		}
		if err := os.WriteFile(arrowOut, b, 0o644); err != nil {
			return err
		}
		report.ArrowBytes = len(b)
	}
	return json.NewEncoder(os.Stdout).Encode(report)
}

// timeSeries is a deterministic random walk, one point per second from 2024-01-01 UTC.
func timeSeries(rows int) *data.Frame {
	rng := rand.New(rand.NewPCG(42, 0))
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	times := make([]time.Time, rows)
	values := make([]float64, rows)
	v := 100.0
	for i := range rows {
		times[i] = start.Add(time.Duration(i) * time.Second)
		values[i] = v
		v += rng.Float64() - 0.5
	}
	frame := data.NewFrame("bench",
		data.NewField("time", nil, times),
		data.NewField("value", data.Labels{"series": "bench"}, values),
	)
	frame.RefID = "A"
	return frame
}
