// Command loadgen sends one request at a fixed rate, open loop, and reports latency
// percentiles measured from each request's due time, so a stalled target cannot hide its
// queue (no coordinated omission).
//
// Two targets: a gRPC unary method called with request bytes from a file (the serialized
// protobuf; a pass-through codec means no generated code is needed), or an HTTP POST of a
// body from a file. Warm-up requests are sent at the same rate first and not counted.
//
//	loadgen -grpc 127.0.0.1:50051 -method /pluginv2.Data/QueryData -body req.bin -rate 1000
//	loadgen -url http://127.0.0.1:8000/api/ds/query -body query.json -rate 1000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// rawCodec hands bytes to gRPC as they are: the request is serialized beforehand.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: want *[]byte, got %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: want *[]byte, got %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "raw" }

type report struct {
	Sent       int            `json:"sent"`
	Errors     int            `json:"errors"`
	ErrorKinds map[string]int `json:"error_kinds"`
	P50        float64        `json:"p50_ms"`
	P90        float64        `json:"p90_ms"`
	P99        float64        `json:"p99_ms"`
	Max        float64        `json:"max_ms"`
	Seconds    float64        `json:"seconds"`
}

type caller func(ctx context.Context) error

func main() {
	grpcAddr := flag.String("grpc", "", "host:port of a gRPC server (direct target)")
	method := flag.String("method", "/pluginv2.Data/QueryData", "full gRPC method name")
	url := flag.String("url", "", "HTTP URL to POST the body to (gateway target)")
	bodyFile := flag.String("body", "", "file with the request: protobuf bytes or HTTP body")
	header := flag.String("header", "", "one extra HTTP header, 'Name: value'")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 5*time.Second, "measured duration")
	warmup := flag.Duration("warmup", time.Second, "unmeasured warm-up at the same rate")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request deadline")
	flag.Parse()
	if (*grpcAddr == "") == (*url == "") || *bodyFile == "" || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: give exactly one of -grpc or -url, a -body file and a positive -rate")
		os.Exit(2)
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	var call caller
	if *grpcAddr != "" {
		conn, err := grpc.NewClient(*grpcAddr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		defer conn.Close()
		call = func(ctx context.Context) error {
			reply := []byte{}
			in := body
			if err := conn.Invoke(ctx, *method, &in, &reply); err != nil {
				return err
			}
			if len(reply) == 0 {
				return fmt.Errorf("empty reply")
			}
			return nil
		}
	} else {
		transport := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		}
		client := &http.Client{Transport: transport}
		name, value, _ := bytes.Cut([]byte(*header), []byte(": "))
		call = func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			if len(name) > 0 {
				req.Header.Set(string(name), string(value))
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			answer, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			if !bytes.Contains(answer, []byte(`"frames"`)) {
				return fmt.Errorf("answer without frames")
			}
			return nil
		}
	}
	run(call, *rate, *warmup, *timeout)
	out := run(call, *rate, *duration, *timeout)
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func run(call caller, rate float64, duration, timeout time.Duration) report {
	total := int(rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	latencies := make([]time.Duration, 0, total)
	kinds := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now().Add(10 * time.Millisecond)
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			err := call(ctx)
			cancel()
			took := time.Since(due)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				kinds[err.Error()]++
				return
			}
			latencies = append(latencies, took)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	r := report{Sent: total, Errors: total - len(latencies), ErrorKinds: kinds,
		Seconds: elapsed.Seconds()}
	if len(latencies) > 0 {
		pick := func(q float64) float64 {
			i := min(len(latencies)-1, int(q*float64(len(latencies))))
			return float64(latencies[i].Microseconds()) / 1000
		}
		r.P50, r.P90, r.P99, r.Max = pick(0.5), pick(0.9), pick(0.99), pick(1)
	}
	return r
}
