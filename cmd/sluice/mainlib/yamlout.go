package mainlib

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// A small JSON-to-YAML writer for the configuration that `sluice envoy-config`
// and `sluice istio` print. Envoy and Kubernetes read JSON too, but operators
// paste YAML. Values go through JSON first (protojson for Envoy protos, so the
// output is exactly what protojson, and hence Envoy, reads back), and the
// writer keeps the JSON key order (proto field order; insertion order for
// [omap]), which a map-based YAML library would sort away.

// yamlSection is one top-level key of a YAML document and the comment above it.
type yamlSection struct {
	comment string
	key     string
	value   any // proto.Message, []proto.Message, or anything encoding/json takes
}

// writeYAMLDoc writes header (as # comment lines) and the sections as one YAML
// mapping.
func writeYAMLDoc(w io.Writer, header string, sections []yamlSection) error {
	var b bytes.Buffer
	writeComment(&b, header, "")
	for i, s := range sections {
		if i > 0 || header != "" {
			b.WriteByte('\n')
		}
		writeComment(&b, s.comment, "")
		raw, err := toJSON(s.value)
		if err != nil {
			return fmt.Errorf("%s: %w", s.key, err)
		}
		n, err := parseJSONNode(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", s.key, err)
		}
		(&ynode{kind: 'm', keys: []string{s.key}, vals: []*ynode{n}}).emit(&b, 0, false)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// writeDoc writes the sections as a YAML document with comments, or, for
// output "json", as one indented JSON object without them.
func writeDoc(w io.Writer, output, header string, sections []yamlSection) error {
	if output != "json" {
		return writeYAMLDoc(w, header, sections)
	}
	m := make(omap, len(sections))
	for i, s := range sections {
		m[i] = kv{s.key, s.value}
	}
	return writeJSON(w, m)
}

// writeJSON writes v (see yamlSection.value) as indented JSON.
func writeJSON(w io.Writer, v any) error {
	raw, err := toJSON(v)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, bytes.TrimSpace(raw), "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err = w.Write(b.Bytes())
	return err
}

// writeYAMLValue writes v (see yamlSection.value) as a YAML document.
func writeYAMLValue(w io.Writer, v any) error {
	raw, err := toJSON(v)
	if err != nil {
		return err
	}
	n, err := parseJSONNode(raw)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	n.emit(&b, 0, false)
	_, err = w.Write(b.Bytes())
	return err
}

func writeComment(b *bytes.Buffer, text, pad string) {
	if text == "" {
		return
	}
	for line := range strings.SplitSeq(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(strings.TrimRight(pad+"# "+line, " "))
		b.WriteByte('\n')
	}
}

var protoJSON = protojson.MarshalOptions{UseProtoNames: true}

// toJSON renders v: protos with protojson (snake_case names, as Envoy's
// documentation writes them), everything else with encoding/json.
func toJSON(v any) ([]byte, error) {
	switch m := v.(type) {
	case proto.Message:
		return protoJSON.Marshal(m)
	case []proto.Message:
		parts := make([]json.RawMessage, len(m))
		for i, e := range m {
			b, err := protoJSON.Marshal(e)
			if err != nil {
				return nil, err
			}
			parts[i] = b
		}
		return json.Marshal(parts)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// omap is a JSON object that keeps its keys in insertion order.
type omap []kv

type kv struct {
	k string
	v any
}

// MarshalJSON implements [json.Marshaler].
func (m omap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range m {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := toJSON(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(bytes.TrimRight(v, "\n"))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ynode is a parsed JSON value: an ordered mapping, a sequence or a scalar
// already rendered as YAML.
type ynode struct {
	kind   byte // 'm' mapping, 'a' sequence, 's' scalar
	keys   []string
	vals   []*ynode
	scalar string
}

func parseJSONNode(raw []byte) (*ynode, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("yaml: trailing data after JSON value")
	}
	return n, nil
}

func parseValue(dec *json.Decoder) (*ynode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		n := &ynode{kind: 'a'}
		if t == '{' {
			n.kind = 'm'
		}
		for dec.More() {
			if n.kind == 'm' {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k.(string))
			}
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, v)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return &ynode{kind: 's', scalar: yamlString(t)}, nil
	case json.Number:
		return &ynode{kind: 's', scalar: t.String()}, nil
	case bool:
		return &ynode{kind: 's', scalar: fmt.Sprint(t)}, nil
	case nil:
		return &ynode{kind: 's', scalar: "null"}, nil
	}
	return nil, fmt.Errorf("yaml: unexpected JSON token %v", tok)
}

// inline reports whether n is written on its key's line.
func (n *ynode) inline() string {
	switch {
	case n.kind == 's':
		return n.scalar
	case n.kind == 'm' && len(n.keys) == 0:
		return "{}"
	case n.kind == 'a' && len(n.vals) == 0:
		return "[]"
	}
	return ""
}

// emit writes n in block style at indent; cont means the first line's
// indentation was already written (the "- " of a sequence item).
func (n *ynode) emit(b *bytes.Buffer, indent int, cont bool) {
	pad := strings.Repeat(" ", indent)
	if s := n.inline(); s != "" {
		b.WriteString(s + "\n")
		return
	}
	for i, v := range n.vals {
		if !cont || i > 0 {
			b.WriteString(pad)
		}
		if n.kind == 'a' {
			b.WriteString("- ")
			if s := v.inline(); s != "" {
				b.WriteString(s + "\n")
			} else {
				v.emit(b, indent+2, true)
			}
			continue
		}
		b.WriteString(yamlKey(n.keys[i]) + ":")
		switch s := v.inline(); {
		case s != "":
			b.WriteString(" " + s + "\n")
		case v.kind == 'a':
			b.WriteByte('\n')
			v.emit(b, indent, false)
		default:
			b.WriteByte('\n')
			v.emit(b, indent+2, false)
		}
	}
}

var (
	plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-/]*$`)
	// plainString: safe unquoted in YAML 1.1 and 1.2 once reserved words and
	// numbers are excluded (no ':', '#', leading indicator or space).
	plainString = regexp.MustCompile(`^[A-Za-z_/][A-Za-z0-9_.\-/]*$`)
	duration    = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?s$`)
	reserved    = map[string]bool{"y": true, "n": true, "yes": true, "no": true, "true": true, "false": true,
		"on": true, "off": true, "null": true, "nan": true, "inf": true}
)

func yamlKey(k string) string {
	if plainKey.MatchString(k) && !reserved[strings.ToLower(k)] {
		return k
	}
	return quoted(k)
}

func yamlString(s string) string {
	if (plainString.MatchString(s) && !reserved[strings.ToLower(s)]) || duration.MatchString(s) {
		return s
	}
	return quoted(s)
}

// quoted is a JSON string literal, which is also a YAML double-quoted scalar.
func quoted(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimRight(b.String(), "\n")
}
