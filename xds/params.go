// Package xds is Sluice's Envoy control plane: it turns a small set of
// deployment parameters into the complete Envoy configuration (listener,
// routes, clusters, the ext_proc filter, local-reply formatting) and serves it
// to every Envoy over ADS, so a change reaches the fleet without a restart.
package xds

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Names of the resources Sluice hands to Envoy. Other packages (tests, the
// admin API, dashboards keyed on Envoy stats) may rely on them; they are part
// of the contract.
const (
	ListenerName      = "sluice"
	RouteConfigName   = "sluice"
	ExtProcCluster    = "sluice_extproc"
	DispatcherCluster = "sluice_dispatcher"

	// RequestIDHeader is minted by extproc in the request-header phase and
	// echoed on every Envoy-generated local reply.
	RequestIDHeader = "x-sluice-request-id"
)

// Defaults applied by [Params.withDefaults].
const (
	DefaultListenAddr      = "127.0.0.1:8080"
	DefaultMaxRequestBytes = 32 << 20

	// bufferHeadroom is added to MaxRequestBytes for the per-connection
	// buffer limits so headers, framing and pipelined bytes never make a
	// request that is within MaxRequestBytes fail.
	bufferHeadroom = 1 << 20
)

// Params is everything the Envoy configuration depends on. The zero value of
// an optional field selects its documented default.
type Params struct {
	// ListenAddr is the client listener, host:port (IP literal). Default
	// 127.0.0.1:8080.
	ListenAddr string
	// ExtProcAddr is the ext_proc gRPC server: "host:port" (TCP) or
	// "unix:/abs/path.sock" (a Unix socket; Envoy's pipe address). Required
	// unless DisableExtProc.
	ExtProcAddr string
	// DispatcherAddr is the dispatcher's host:port (plain HTTP/1.1).
	// Required.
	DispatcherAddr string
	// MaxRequestBytes sizes the request buffers (default 32 MiB). Envoy
	// answers 413 once a buffered body exceeds MaxRequestBytes + 1 MiB (the
	// listener limit; Envoy 1.40 offers no per-route way to lower it, see
	// buildRouteConfig). extproc may enforce MaxRequestBytes exactly from
	// content-length.
	MaxRequestBytes uint32
	// DisableExtProc drops the ext_proc filter: an Envoy-only passthrough
	// for benchmarks. Never use it in production: nothing authenticates.
	DisableExtProc bool
	// OTLPEndpoint, when set (grpc://host:port or http://host:port[/path]),
	// makes Envoy trace every request and export its own spans there.
	OTLPEndpoint string
}

func (p Params) withDefaults() Params {
	if p.ListenAddr == "" {
		p.ListenAddr = DefaultListenAddr
	}
	if p.MaxRequestBytes == 0 {
		p.MaxRequestBytes = DefaultMaxRequestBytes
	}
	return p
}

// validate reports every problem at once (errors.Join) so an operator fixes a
// bad config in one round.
func (p Params) validate() error {
	var errs []error
	if _, _, err := splitHostPort(p.ListenAddr); err != nil {
		errs = append(errs, fmt.Errorf("ListenAddr: %w", err))
	} else if host, _, _ := splitHostPort(p.ListenAddr); net.ParseIP(host) == nil {
		errs = append(errs, fmt.Errorf("ListenAddr %q: host must be an IP literal", p.ListenAddr))
	}
	if _, _, err := splitHostPort(p.DispatcherAddr); err != nil {
		errs = append(errs, fmt.Errorf("DispatcherAddr: %w", err))
	}
	if !p.DisableExtProc {
		if path, ok := strings.CutPrefix(p.ExtProcAddr, "unix:"); ok {
			if !strings.HasPrefix(path, "/") {
				errs = append(errs, fmt.Errorf("ExtProcAddr %q: unix socket path must be absolute", p.ExtProcAddr))
			}
		} else if _, _, err := splitHostPort(p.ExtProcAddr); err != nil {
			errs = append(errs, fmt.Errorf("ExtProcAddr: %w", err))
		}
	}
	if p.OTLPEndpoint != "" {
		if _, err := parseOTLP(p.OTLPEndpoint); err != nil {
			errs = append(errs, err)
		}
	}
	if uint64(p.MaxRequestBytes)+bufferHeadroom > 1<<32-1 {
		errs = append(errs, fmt.Errorf("MaxRequestBytes %d: must leave room for %d bytes of headroom below 4 GiB", p.MaxRequestBytes, bufferHeadroom))
	}
	return errors.Join(errs...)
}

// connBufferLimit is the per-connection buffer limit for the listener and the
// dispatcher cluster. Field notes: BUFFERED bodies above
// per_connection_buffer_limit_bytes (default 1 MiB) get 413.
func (p Params) connBufferLimit() uint32 { return p.MaxRequestBytes + bufferHeadroom }

func splitHostPort(addr string) (string, uint32, error) {
	if addr == "" {
		return "", 0, errors.New("empty address")
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		return "", 0, fmt.Errorf("address %q: empty host", addr)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("address %q: bad port", addr)
	}
	return host, uint32(port), nil
}
