// Package envoy runs the Envoy data plane for Sluice: it renders the
// bootstrap (which names only the xDS control plane), finds the Envoy binary,
// and supervises Envoy as a child process.
package envoy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"text/template"
)

//go:embed bootstrap.yaml.tmpl
var bootstrapTemplate string

var bootstrapTmpl = template.Must(template.New("bootstrap").Funcs(template.FuncMap{
	// json renders a string as a JSON string literal, which is also a
	// valid YAML scalar: node ids with ':' or '#' cannot break the file.
	"json": func(s string) (string, error) {
		b, err := json.Marshal(s)
		return string(b), err
	},
}).Parse(bootstrapTemplate))

// BootstrapParams configures [Bootstrap].
type BootstrapParams struct {
	// XDSAddr is the sluice xds server, host:port. A host name selects
	// STRICT_DNS resolution, an IP literal STATIC.
	XDSAddr string
	// AdminAddr is Envoy's admin listener, host:port. It must be loopback:
	// the admin API can change Envoy's state.
	AdminAddr string
	// NodeID and Cluster identify this Envoy to the control plane (which
	// serves every node the same configuration) and in Envoy's stats.
	NodeID, Cluster string
}

type bootstrapData struct {
	NodeID, Cluster string
	AdminHost       string
	AdminPort       uint16
	XDSHost         string
	XDSPort         uint16
	XDSClusterType  string
}

// Bootstrap renders the Envoy bootstrap YAML (the embedded
// bootstrap.yaml.tmpl) for p.
func Bootstrap(p BootstrapParams) ([]byte, error) {
	var errs []error
	d := bootstrapData{NodeID: p.NodeID, Cluster: p.Cluster}
	if p.NodeID == "" {
		errs = append(errs, errors.New("envoy: node id is required"))
	}
	if p.Cluster == "" {
		errs = append(errs, errors.New("envoy: cluster name is required"))
	}
	var err error
	if d.AdminHost, d.AdminPort, err = hostPort(p.AdminAddr); err != nil {
		errs = append(errs, fmt.Errorf("AdminAddr: %w", err))
	} else if ip := net.ParseIP(d.AdminHost); ip == nil || !ip.IsLoopback() {
		errs = append(errs, fmt.Errorf("AdminAddr %q: must be a loopback IP", p.AdminAddr))
	}
	if d.XDSHost, d.XDSPort, err = hostPort(p.XDSAddr); err != nil {
		errs = append(errs, fmt.Errorf("XDSAddr: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("envoy: bootstrap: %w", err)
	}
	d.XDSClusterType = "STATIC"
	if net.ParseIP(d.XDSHost) == nil {
		d.XDSClusterType = "STRICT_DNS"
	}
	var buf bytes.Buffer
	if err := bootstrapTmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("envoy: bootstrap: %w", err)
	}
	return buf.Bytes(), nil
}

func hostPort(addr string) (string, uint16, error) {
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
	return host, uint16(port), nil
}
