package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// peerSet tells the attach port which other replicas of the Plugin are ready.
//
// Each --peers entry is host:port; the host is looked up every interval (a headless
// Service's name gives one address per ready pod) and each address becomes a peer dialled
// on that port, the peers' filtered local port. This pod's own address (--self-ip) is left
// out: the attach port reaches its local plugin directly, one hop shorter.
type peerSet struct {
	entries  []string
	selfIP   net.IP
	interval time.Duration
	update   func(peers []string)
	log      *slog.Logger
	lookup   func(ctx context.Context, host string) ([]string, error)

	mu      sync.Mutex
	known   map[string][]string // entry -> its last good answer
	current []string
}

func newPeerSet(entries []string, selfIP net.IP, interval time.Duration,
	update func([]string), log *slog.Logger) *peerSet {
	return &peerSet{entries: entries, selfIP: selfIP, interval: interval, update: update,
		log: log, lookup: net.DefaultResolver.LookupHost, known: map[string][]string{},
		current: []string{}}
}

// run refreshes the set every interval until ctx ends.
func (s *peerSet) run(ctx context.Context) {
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	for {
		s.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// refresh looks every entry up once (bounded) and updates the balancer when the set
// changed. An entry whose lookup fails keeps its last answer; one that does not exist
// (a headless Service without ready pods) has none.
func (s *peerSet) refresh(ctx context.Context) {
	answers := make(map[string][]string, len(s.entries))
	for _, entry := range s.entries {
		host, port, err := net.SplitHostPort(entry)
		if err != nil {
			continue // validated at start
		}
		lookupCtx, cancel := context.WithTimeout(ctx, min(s.interval, 2*time.Second))
		found, err := s.lookup(lookupCtx, host)
		cancel()
		if err != nil {
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				s.log.Debug("peer lookup failed; keeping its last answer", "peers", entry,
					"error", err.Error())
				continue
			}
			found = nil
		}
		addresses := make([]string, 0, len(found))
		for _, ip := range found {
			if s.selfIP != nil && net.ParseIP(ip).Equal(s.selfIP) {
				continue // ourselves: the local plugin, one hop shorter
			}
			addresses = append(addresses, net.JoinHostPort(ip, port))
		}
		answers[entry] = addresses
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for entry, addresses := range answers {
		s.known[entry] = addresses
	}
	s.updateLocked()
}

func (s *peerSet) updateLocked() {
	peers := []string{}
	for _, addresses := range s.known {
		peers = append(peers, addresses...)
	}
	slices.Sort(peers)
	peers = slices.Compact(peers)
	if slices.Equal(peers, s.current) {
		return
	}
	s.log.Info("attach peers changed", "peers", strings.Join(peers, ","))
	s.current = peers
	s.update(slices.Clone(peers))
}

func (s *peerSet) addresses() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.current)
}
