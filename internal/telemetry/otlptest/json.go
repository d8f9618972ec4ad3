package otlptest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// idFields are the OTLP/JSON fields that hold ids. OTLP/JSON writes them as hex
// (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding) where protojson
// expects base64 for bytes, so they are converted before protojson reads the message.
var idFields = map[string]bool{"traceId": true, "spanId": true, "parentSpanId": true}

// unmarshalJSON decodes an OTLP/JSON ExportTraceServiceRequest.
func unmarshalJSON(raw []byte, msg *coltracepb.ExportTraceServiceRequest) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep 64-bit integers exact on the way through
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if err := hexIDsToBase64(v); err != nil {
		return err
	}
	fixed, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(fixed, msg)
}

// hexIDsToBase64 rewrites, in place, every id field found anywhere in v. Attribute names
// cannot collide with them: OTLP/JSON puts attribute names in "key" values, not field names.
func hexIDsToBase64(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && idFields[k] {
				b, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
				x[k] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	}
	return nil
}
