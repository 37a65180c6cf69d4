package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// TicksPath is the only stream path this plugin serves.
const TicksPath = "ticks"

// tickOptions is the optional JSON a subscriber sends as stream data.
type tickOptions struct {
	IntervalMs int `json:"intervalMs"`
}

// SubscribeStream accepts only the ticks path and returns the frame schema as initial data.
func (d *Datasource) SubscribeStream(_ context.Context, req *backend.SubscribeStreamRequest) (*backend.SubscribeStreamResponse, error) {
	if req.Path != TicksPath {
		return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusNotFound}, nil
	}
	initial, err := backend.NewInitialFrame(tickFrame(time.Time{}, 0), data.IncludeSchemaOnly)
	if err != nil {
		return nil, err
	}
	return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusOK, InitialData: initial}, nil
}

// RunStream sends one tick frame per interval until Grafana cancels the context.
func (d *Datasource) RunStream(ctx context.Context, req *backend.RunStreamRequest, sender *backend.StreamSender) error {
	if req.Path != TicksPath {
		return fmt.Errorf("unknown stream path %q; this plugin streams only %q", req.Path, TicksPath)
	}
	opts := tickOptions{IntervalMs: 500}
	if len(req.Data) > 0 {
		if err := json.Unmarshal(req.Data, &opts); err != nil {
			return fmt.Errorf("stream data must be JSON like {\"intervalMs\": 500}: %w", err)
		}
	}
	ticker := time.NewTicker(time.Duration(max(opts.IntervalMs, 10)) * time.Millisecond)
	defer ticker.Stop()
	for n := int64(0); ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			if err := sender.SendFrame(tickFrame(now, n), data.IncludeAll); err != nil {
				return err
			}
		}
	}
}

// PublishStream refuses: clients cannot write into this plugin's channels.
func (d *Datasource) PublishStream(_ context.Context, _ *backend.PublishStreamRequest) (*backend.PublishStreamResponse, error) {
	return &backend.PublishStreamResponse{Status: backend.PublishStreamStatusPermissionDenied}, nil
}

func tickFrame(at time.Time, n int64) *data.Frame {
	return data.NewFrame("ticks",
		data.NewField("time", nil, []time.Time{at.UTC()}),
		data.NewField("tick", nil, []int64{n}),
	)
}
