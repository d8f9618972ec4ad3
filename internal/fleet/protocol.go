package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-gateway/sluice/internal/config"
)

// TypeURLPrefix prefixes every resource type URL; the kind follows it.
const TypeURLPrefix = "type.googleapis.com/sluice.config.v1."

// Wildcard is the delta xDS name subscribing to every resource of a type.
const Wildcard = "*"

// indexPrefix starts the name of an on-demand lookup: "index:<index name>:<key>".
const indexPrefix = "index:"

// bytesValueURL is the type URL of every resource payload.
const bytesValueURL = "type.googleapis.com/google.protobuf.BytesValue"

// TypeURL returns the delta xDS type URL of kind.
func TypeURL(kind config.Kind) string { return TypeURLPrefix + string(kind) }

// kindOf parses a type URL into a kind the fleet distributes. API tokens are never served,
// whatever a client asks for: they are the admin API's credentials, not data-plane config.
func kindOf(typeURL string) (config.Kind, bool) {
	s, ok := strings.CutPrefix(typeURL, TypeURLPrefix)
	if !ok {
		return "", false
	}
	k := config.Kind(s)
	return k, k.Valid() && k != config.KindAPIToken
}

// lookupAllowed lists the (kind, index) pairs a replica may resolve on demand: the one the
// data plane needs, a virtual key by the hash of a presented secret.
func lookupAllowed(kind config.Kind, index string) bool {
	return kind == config.KindVirtualKey && index == "vk_hash"
}

// IndexName returns the lookup name for the index entry (name, key).
func IndexName(name, key string) string { return indexPrefix + name + ":" + key }

// parseIndexName splits a lookup name; ok is false for a plain resource name.
func parseIndexName(s string) (name, key string, ok bool) {
	rest, ok := strings.CutPrefix(s, indexPrefix)
	if !ok {
		return "", "", false
	}
	name, key, ok = strings.Cut(rest, ":")
	return name, key, ok && name != "" && key != ""
}

// version renders a store revision as a resource version.
func version(rev int64) string { return strconv.FormatInt(rev, 10) }

// parseVersion parses a resource version; a malformed one is 0 (older than anything).
func parseVersion(s string) int64 {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// encodeResource wraps one document for the wire.
func encodeResource(id string, rev int64, doc []byte, aliases ...string) (*discovery.Resource, error) {
	a, err := anypb.New(wrapperspb.Bytes(doc))
	if err != nil {
		return nil, err
	}
	return &discovery.Resource{Name: id, Version: version(rev), Resource: a, Aliases: aliases}, nil
}

// decodeResource unwraps one resource, checking everything a NACK would be about.
func decodeResource(r *discovery.Resource) (json.RawMessage, error) {
	if r.GetName() == "" || strings.HasPrefix(r.GetName(), indexPrefix) {
		return nil, fmt.Errorf("resource has an invalid name %q", r.GetName())
	}
	if r.GetVersion() == "" {
		return nil, fmt.Errorf("resource %q has no version", r.GetName())
	}
	a := r.GetResource()
	if a == nil {
		return nil, fmt.Errorf("resource %q has no payload", r.GetName())
	}
	if a.GetTypeUrl() != bytesValueURL {
		return nil, fmt.Errorf("resource %q: payload type %q, want %q", r.GetName(), a.GetTypeUrl(), bytesValueURL)
	}
	var b wrapperspb.BytesValue
	if err := a.UnmarshalTo(&b); err != nil {
		return nil, fmt.Errorf("resource %q: %w", r.GetName(), err)
	}
	if !json.Valid(b.GetValue()) {
		return nil, fmt.Errorf("resource %q: payload is not JSON", r.GetName())
	}
	return json.RawMessage(b.GetValue()), nil
}

// ErrNotConnected is returned by Lookup while the client has no stream to the server.
var ErrNotConnected = errors.New("fleet: not connected to the control plane")
