package plugin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// maxChunks bounds the streamed resource so a typo cannot make it run for ever.
const maxChunks = 1000

// routes serves the resources through the SDK's HTTP adapter, which turns every Flush
// into one CallResourceResponse message of the stream.
func (d *Datasource) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /settings", d.handleSettings)
	mux.HandleFunc("POST /echo", handleEcho)
	mux.HandleFunc("GET /stream", handleStream)
	return mux
}

func (d *Datasource) handleSettings(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"uid":               d.uid,
		"crashAfterQueries": d.settings.CrashAfterQueries,
		"hasApiKey":         d.apiKey != "",
	})
}

func handleEcho(w http.ResponseWriter, r *http.Request) {
	var body any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the body must be JSON: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"method": r.Method, "body": body})
}

// handleStream writes ?chunks=N (default 5) newline-delimited JSON lines, one message each.
func handleStream(w http.ResponseWriter, r *http.Request) {
	chunks := 5
	if raw := r.URL.Query().Get("chunks"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxChunks {
			writeJSON(w, http.StatusBadRequest, map[string]string{
				"error": fmt.Sprintf("chunks must be an integer from 1 to %d, not %q", maxChunks, raw),
			})
			return
		}
		chunks = n
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	for i := range chunks {
		line, _ := json.Marshal(map[string]int{"chunk": i, "of": chunks})
		_, _ = w.Write(append(line, '\n'))
		if flusher != nil {
			flusher.Flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
