package charts

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mode: istio. An Istio ingress gateway is the data plane: the chart renders no Envoy and runs
// extproc standalone for the gateway's ext_proc filter, which `sluice istio` inserts.

// gatewayPeer is the NetworkPolicy peer the chart renders for the gateway pods.
func gatewayPeer(ns string, labels map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: labels},
	}
}

func istioValues() string { return filepath.Join(chartDir, "ci", "istio-values.yaml") }

// TestIstio: ci/istio-values.yaml renders no Envoy, a standalone extproc Deployment (the
// sidecar's container on a TCP port, no Istio sidecar) with a gRPC Service, an HPA and a PDB
// in Envoy's place, and NetworkPolicies that admit the gateway to extproc and the dispatcher
// and nowhere else. (TestVariants/istio runs the generic checks on the same render: schema
// types, probes on listened ports, wiring, security, secrets.)
func TestIstio(t *testing.T) {
	docs, err := render(t, "-f", istioValues())
	if err != nil {
		t.Fatal(err)
	}
	r := index(t, docs)
	if !r.istio {
		t.Fatalf("mode istio: no standalone extproc workload")
	}

	// No Envoy: no workload, Service, bootstrap, HPA, PDB, policy or Ingress for it.
	for _, d := range r.docs {
		if d.Name() == svcName("envoy") || strings.Contains(d.Source, "templates/envoy") {
			t.Errorf("mode istio renders %s", d)
		}
	}
	for _, w := range r.workloads {
		for _, c := range w.pod.Spec.Containers {
			if c.Name == "envoy" || strings.Contains(c.Image, "envoy") {
				t.Errorf("mode istio: %s runs an Envoy container %s", w.name, c.Name)
			}
		}
	}
	if len(r.ingresses) > 0 {
		t.Errorf("mode istio renders an Ingress")
	}

	// The extproc Deployment.
	w := r.workloads[svcName("extproc")]
	if w.kind != "Deployment" {
		t.Errorf("extproc is a %s, want a Deployment", w.kind)
	}
	if got := w.pod.Annotations["sidecar.istio.io/inject"]; got != "false" {
		t.Errorf("extproc pod annotation sidecar.istio.io/inject = %q, want \"false\"", got)
	}
	if got := w.pod.Annotations["example.com/team"]; got != "ai-platform" {
		t.Errorf("extproc podAnnotations not kept: %v", w.pod.Annotations)
	}
	if len(w.pod.Spec.Containers) != 1 || len(w.pod.Spec.InitContainers) != 0 {
		t.Fatalf("extproc pod: want one container, got %d (+%d init)", len(w.pod.Spec.Containers), len(w.pod.Spec.InitContainers))
	}
	c := w.container("extproc")
	if c == nil {
		t.Fatalf("extproc pod: no extproc container")
	}
	wantArgs := []string{"extproc", "--listen", "0.0.0.0:9004", "--health-listen", ":9003",
		"--xds", svcFQDN("xds") + ":9001", "--state-dir", "/var/lib/sluice", "--counter-failure-mode", "closed", "--log-level", "info"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("extproc args %q, want %q", c.Args, wantArgs)
	}
	wantPorts := []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9004, Protocol: corev1.ProtocolTCP},
		{Name: "health", ContainerPort: 9003, Protocol: corev1.ProtocolTCP}}
	if !reflect.DeepEqual(c.Ports, wantPorts) {
		t.Errorf("extproc ports %+v, want %+v", c.Ports, wantPorts)
	}

	// The probes use HTTP on --health-listen (the ext_proc port speaks only gRPC).
	health, _ := flag(c.Args, "health-listen")
	for name, pr := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("extproc %s probe: want httpGet", name)
			continue
		}
		if _, n, ok := resolvePort(w, pr.HTTPGet.Port); !ok || n != portOf(t, health) {
			t.Errorf("extproc %s probe port %s, want --health-listen %s", name, pr.HTTPGet.Port.String(), health)
		}
	}

	// The same container as the sidecar in the default (envoy) mode, but for the listen address
	// and the socket: security context, probes, secrets, environment, resources, image.
	defDocs, err := render(t)
	if err != nil {
		t.Fatal(err)
	}
	def := index(t, defDocs)
	envoyPod := def.workloads[svcName("envoy")]
	side := envoyPod.container("extproc")
	for what, pair := range map[string][2]any{
		"securityContext":     {c.SecurityContext, side.SecurityContext},
		"startupProbe":        {c.StartupProbe, side.StartupProbe},
		"livenessProbe":       {c.LivenessProbe, side.LivenessProbe},
		"readinessProbe":      {c.ReadinessProbe, side.ReadinessProbe},
		"env":                 {c.Env, side.Env},
		"resources":           {c.Resources, side.Resources},
		"image":               {c.Image, side.Image},
		"command":             {c.Command, side.Command},
		"pod securityContext": {w.pod.Spec.SecurityContext, envoyPod.pod.Spec.SecurityContext},
		"serviceAccountName":  {w.pod.Spec.ServiceAccountName, envoyPod.pod.Spec.ServiceAccountName},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("standalone extproc %s differs from the sidecar's:\n%+v\n%+v", what, pair[0], pair[1])
		}
	}
	sideArgs := slices.Clone(side.Args)
	for i := range sideArgs {
		if i > 0 && sideArgs[i-1] == "--listen" {
			sideArgs[i] = "0.0.0.0:9004"
		}
	}
	if !slices.Equal(c.Args, sideArgs) {
		t.Errorf("standalone extproc args %q; the sidecar's (listen aside) %q", c.Args, sideArgs)
	}
	sideMounts := slices.DeleteFunc(slices.Clone(side.VolumeMounts), func(m corev1.VolumeMount) bool { return m.Name == "extproc-socket" })
	if !reflect.DeepEqual(c.VolumeMounts, sideMounts) {
		t.Errorf("standalone extproc mounts %+v, the sidecar's (socket aside) %+v", c.VolumeMounts, sideMounts)
	}
	volume := func(w *workload, name string) *corev1.Volume {
		for i := range w.pod.Spec.Volumes {
			if w.pod.Spec.Volumes[i].Name == name {
				return &w.pod.Spec.Volumes[i]
			}
		}
		return nil
	}
	for _, m := range c.VolumeMounts {
		got, want := volume(w, m.Name), volume(envoyPod, m.Name)
		if got == nil || want == nil || !reflect.DeepEqual(got.VolumeSource, want.VolumeSource) {
			// The Secret's name depends on the release only.
			t.Errorf("volume %s: %+v, the sidecar's %+v", m.Name, got, want)
		}
	}

	// The Service: ClusterIP, one port 9004 named grpc with appProtocol grpc, reaching the
	// port extproc listens on.
	svc := r.services[svcName("extproc")]
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 {
		t.Fatalf("extproc Service: type %s, ports %+v; want ClusterIP with one port", svc.Spec.Type, svc.Spec.Ports)
	}
	p := svc.Spec.Ports[0]
	if p.Name != "grpc" || p.Port != 9004 || p.AppProtocol == nil || *p.AppProtocol != "grpc" || p.Protocol != corev1.ProtocolTCP {
		t.Errorf("extproc Service port %+v, want grpc 9004/TCP appProtocol grpc", p)
	}
	if pc, n, ok := resolvePort(w, p.TargetPort); !ok || pc != c || n != 9004 {
		t.Errorf("extproc Service targets %s, not extproc's port 9004", p.TargetPort.String())
	}

	// HPA and PDB for extproc in place of Envoy's.
	var hpas, pdbs []string
	for _, h := range r.hpas {
		hpas = append(hpas, h.Name)
		if h.Name == svcName("extproc") {
			if h.Spec.ScaleTargetRef.Name != svcName("extproc") || h.Spec.ScaleTargetRef.Kind != "Deployment" ||
				h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 2 || h.Spec.MaxReplicas != 8 {
				t.Errorf("extproc HPA %+v, min %v: want the extproc Deployment, 2..8", h.Spec.ScaleTargetRef, h.Spec.MinReplicas)
			}
		}
	}
	for _, pdb := range r.pdbs {
		pdbs = append(pdbs, pdb.Name)
	}
	slices.Sort(hpas)
	slices.Sort(pdbs)
	if want := []string{svcName("dispatcher"), svcName("extproc")}; !slices.Equal(hpas, want) || !slices.Equal(pdbs, want) {
		t.Errorf("HPAs %v, PDBs %v; want %v each", hpas, pdbs, want)
	}
	if w.replicas != nil {
		t.Errorf("extproc sets replicas under an HPA")
	}

	// NetworkPolicies: extproc's, the dispatcher's and xds's (checkNetworkPolicies checks who
	// each admits); the gateway peer appears in exactly one rule of extproc's and one of the
	// dispatcher's, on their gRPC and HTTP ports.
	var policies []string
	gatewayRules := map[string][]string{}
	for _, np := range r.netpols {
		policies = append(policies, np.Name)
		for _, rule := range np.Spec.Ingress {
			for _, peer := range rule.From {
				if reflect.DeepEqual(peer, r.gatewayPeer) {
					for _, port := range rule.Ports {
						gatewayRules[np.Name] = append(gatewayRules[np.Name], port.Port.String())
					}
				} else if peer.NamespaceSelector != nil && np.Name != svcName("xds") {
					t.Errorf("NetworkPolicy %s admits another namespace: %+v", np.Name, peer)
				}
			}
		}
	}
	slices.Sort(policies)
	if want := []string{svcName("dispatcher"), svcName("extproc"), svcName("xds")}; !slices.Equal(policies, want) {
		t.Errorf("NetworkPolicies %v, want %v", policies, want)
	}
	if want := map[string][]string{svcName("extproc"): {"grpc"}, svcName("dispatcher"): {"http"}}; !reflect.DeepEqual(gatewayRules, want) {
		t.Errorf("the gateway peer is admitted to %v, want %v", gatewayRules, want)
	}
	checkNetworkPolicies(t, r)
	checkProbes(t, r)
}

// TestIstioGatewaySelector: istio.gateway drives the NetworkPolicy peer.
func TestIstioGatewaySelector(t *testing.T) {
	f := filepath.Join(t.TempDir(), "gw-values.yaml")
	if err := os.WriteFile(f, []byte("istio:\n  gateway:\n    namespace: edge\n    labels: {istio: null, app: edge-gateway}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	docs, err := render(t, "-f", istioValues(), "-f", f)
	if err != nil {
		t.Fatal(err)
	}
	r := index(t, docs)
	r.gatewayPeer = gatewayPeer("edge", map[string]string{"app": "edge-gateway"})
	checkNetworkPolicies(t, r)
}

// TestIstioCommand: the `sluice istio` command NOTES.txt prints for a release, run with the
// real sluice binary, points the gateway at exactly the Services the chart renders (names,
// ports, namespace) and selects the gateway pods the NetworkPolicies admit. With release name
// "sluice" `sluice istio`'s default hosts are the chart's, and no host flags are printed.
func TestIstioCommand(t *testing.T) {
	custom := filepath.Join(t.TempDir(), "custom-values.yaml")
	if err := os.WriteFile(custom, []byte(`istio:
  gateway:
    namespace: edge
    labels: {istio: null, app: edge-gateway, tier: front}
  extproc: {port: 9005}
dispatcher: {port: 9200}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, release string
		args          []string
		hostFlags     bool
		gwNamespace   string
		gwLabels      map[string]string
	}{
		{"release sluice", "sluice", []string{"-f", istioValues()}, false, "istio-system", map[string]string{"istio": "ingressgateway"}},
		{"release gw", "gw", []string{"-f", istioValues()}, true, "istio-system", map[string]string{"istio": "ingressgateway"}},
		{"custom gateway and ports", "gw", []string{"-f", istioValues(), "-f", custom}, true, "edge", map[string]string{"app": "edge-gateway", "tier": "front"}},
	}
	bin := sluiceBinary(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := renderRelease(t, tc.release, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			// The rendered Services (by component), without the gw-specific index().
			services := map[string]*corev1.Service{}
			for _, d := range docs {
				if d.Kind() != "Service" {
					continue
				}
				td, err := decodeStrict(d)
				if err != nil {
					t.Fatal(err)
				}
				s := td.obj.(*corev1.Service)
				services[s.Labels["app.kubernetes.io/component"]] = s
			}
			ext, disp := services["extproc"], services["dispatcher"]
			if ext == nil || disp == nil {
				t.Fatalf("no extproc or dispatcher Service: %v", sortedKeys(services))
			}
			if tc.release == "sluice" && (ext.Name != "sluice-extproc" || disp.Name != "sluice-dispatcher") {
				t.Errorf("release sluice: Services %s, %s; `sluice istio` assumes sluice-extproc, sluice-dispatcher", ext.Name, disp.Name)
			}
			fqdn := func(s *corev1.Service) string { return s.Name + "." + s.Namespace + ".svc.cluster.local" }
			portNamed := func(s *corev1.Service, name string) int32 {
				for _, p := range s.Spec.Ports {
					if p.Name == name {
						return p.Port
					}
				}
				t.Fatalf("Service %s: no port %s", s.Name, name)
				return 0
			}

			notes := renderNotes(t, tc.release, tc.args...)
			args, gateway, hosts := istioCommand(t, notes)
			if got := slices.ContainsFunc(args, func(a string) bool { return strings.HasSuffix(a, "-host") }); got != tc.hostFlags {
				t.Errorf("NOTES host flags printed: %v, want %v:\n%s", got, tc.hostFlags, notes)
			}
			out := runSluice(t, bin, append(args, "--output", "json")...)
			var list struct {
				Items []map[string]any `json:"items"`
			}
			if err := json.Unmarshal(out, &list); err != nil {
				t.Fatalf("sluice istio output: %v\n%s", err, out)
			}
			byKind := map[string]map[string]any{}
			for _, it := range list.Items {
				kind, _ := it["kind"].(string)
				if byKind[kind] != nil {
					t.Errorf("two %s", kind)
				}
				byKind[kind] = it
				if ns := dig(it, "metadata", "namespace"); ns != tc.gwNamespace {
					t.Errorf("%s in namespace %v, want the gateway's %s", kind, ns, tc.gwNamespace)
				}
			}
			if got := sortedKeys(byKind); !slices.Equal(got, []string{"DestinationRule", "EnvoyFilter", "VirtualService"}) {
				t.Errorf("sluice istio rendered %v, want EnvoyFilter, VirtualService and DestinationRule (no ServiceEntry: the Services are in the mesh)", got)
			}
			// The gateway pods: the EnvoyFilter's workload selector is the NetworkPolicy peer.
			sel, _ := json.Marshal(dig(byKind["EnvoyFilter"], "spec", "workloadSelector", "labels"))
			var labels map[string]string
			_ = json.Unmarshal(sel, &labels)
			if !reflect.DeepEqual(labels, tc.gwLabels) {
				t.Errorf("EnvoyFilter selects %v, want %v", labels, tc.gwLabels)
			}
			// extproc: the DestinationRule's host and the filter's cluster are the extproc Service.
			if got := dig(byKind["DestinationRule"], "spec", "host"); got != fqdn(ext) {
				t.Errorf("DestinationRule host %v, want the extproc Service %s", got, fqdn(ext))
			}
			cluster := "outbound|" + strconv.Itoa(int(portNamed(ext, "grpc"))) + "||" + fqdn(ext)
			if raw, _ := json.Marshal(byKind["EnvoyFilter"]); !bytes.Contains(raw, []byte(strconv.Quote(cluster))) {
				t.Errorf("EnvoyFilter does not call %s:\n%s", cluster, raw)
			}
			// The dispatcher: the VirtualService's destination.
			dest := dig(byKind["VirtualService"], "spec", "http", 0, "route", 0, "destination")
			if host := dig(dest, "host"); host != fqdn(disp) {
				t.Errorf("VirtualService routes to %v, want the dispatcher Service %s", host, fqdn(disp))
			}
			if port := dig(dest, "port", "number"); port != float64(portNamed(disp, "http")) {
				t.Errorf("VirtualService port %v, want the dispatcher Service's %d", port, portNamed(disp, "http"))
			}
			vs := byKind["VirtualService"]
			if g := dig(vs, "spec", "gateways", 0); g != gateway {
				t.Errorf("VirtualService gateway %v, want %s", g, gateway)
			}
			if h := dig(vs, "spec", "hosts", 0); h != hosts {
				t.Errorf("VirtualService host %v, want %s", h, hosts)
			}
			// The chart's NetworkPolicies admit exactly those pods to both Services' pods.
			want := gatewayPeer(tc.gwNamespace, tc.gwLabels)
			admitted := 0
			for _, d := range docs {
				if d.Kind() != "NetworkPolicy" {
					continue
				}
				td, err := decodeStrict(d)
				if err != nil {
					t.Fatal(err)
				}
				np := td.obj.(*networkingv1.NetworkPolicy)
				for _, rule := range np.Spec.Ingress {
					for _, peer := range rule.From {
						if reflect.DeepEqual(peer, want) {
							admitted++
						}
					}
				}
			}
			if admitted != 2 {
				t.Errorf("the gateway peer %+v is admitted by %d rules, want 2 (extproc, dispatcher)", want, admitted)
			}
		})
	}
}

// dig walks decoded JSON by keys and indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// renderRelease is render with another release name.
func renderRelease(t *testing.T, release string, args ...string) ([]doc, error) {
	t.Helper()
	base := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	out, err := helm(t, append(base, args...)...)
	if err != nil {
		return nil, err
	}
	return splitDocs(out)
}

// renderNotes renders NOTES.txt (which helm template leaves out) from a copy of the chart in
// which it is an ordinary template.
func renderNotes(t *testing.T, release string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir(chartDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if rel == filepath.Join("templates", "NOTES.txt") {
			// helm parses every rendered template as YAML: NOTES becomes a named template,
			// included as a block scalar.
			rel = filepath.Join("templates", "_notes-under-test.tpl")
			b = append(append([]byte(`{{- define "notes-under-test" -}}`), b...), `{{- end -}}`...)
			wrapper := "notes: |\n{{ include \"notes-under-test\" . | indent 2 }}\n"
			if err := os.WriteFile(filepath.Join(dir, "templates", "notes-under-test.yaml"), []byte(wrapper), 0o644); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"template", release, dir, "--namespace", namespace, "--kube-version", kubeVersion,
		"--show-only", "templates/notes-under-test.yaml"}
	out, err := helm(t, append(base, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocs(out)
	if err != nil || len(docs) != 1 {
		t.Fatalf("rendering NOTES.txt: %v\n%s", err, out)
	}
	notes, _ := docs[0].Obj["notes"].(string)
	if notes == "" {
		t.Fatalf("NOTES.txt rendered empty:\n%s", out)
	}
	return notes
}

// istioCommand extracts the `sluice istio` command from NOTES: its arguments (with "$GATEWAY"
// and "$HOSTS" replaced by the values the notes suggest), and those values.
func istioCommand(t *testing.T, notes string) (args []string, gateway, hosts string) {
	t.Helper()
	lines := strings.Split(notes, "\n")
	vars := map[string]string{}
	var cmd strings.Builder
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if strings.HasPrefix(line, "GATEWAY=") {
			for _, f := range strings.Fields(line) {
				k, v, _ := strings.Cut(f, "=")
				vars[k] = v
			}
		}
		if !strings.HasPrefix(line, "sluice istio ") {
			continue
		}
		for ; i < len(lines); i++ {
			l := strings.TrimSpace(lines[i])
			cont := strings.HasSuffix(l, "\\")
			cmd.WriteString(strings.TrimSuffix(l, "\\") + " ")
			if !cont {
				break
			}
		}
		break
	}
	fields := strings.Fields(cmd.String())
	if len(fields) < 2 || fields[0] != "sluice" || fields[1] != "istio" {
		t.Fatalf("NOTES.txt has no `sluice istio` command:\n%s", notes)
	}
	pipe := slices.Index(fields, "|")
	if pipe < 0 || strings.Join(fields[pipe:], " ") != "| kubectl apply -f -" {
		t.Fatalf("NOTES.txt: the command does not end in | kubectl apply -f -: %q", fields)
	}
	gateway, hosts = vars["GATEWAY"], vars["HOSTS"]
	if gateway == "" || hosts == "" {
		t.Fatalf("NOTES.txt: no GATEWAY=… HOSTS=… line:\n%s", notes)
	}
	for _, f := range fields[2:pipe] {
		switch f {
		case `"$GATEWAY"`:
			f = gateway
		case `"$HOSTS"`:
			f = hosts
		}
		if strings.ContainsAny(f, `"'$<>`) {
			t.Fatalf("NOTES.txt: argument %q needs a shell", f)
		}
		args = append(args, f)
	}
	return append([]string{"istio"}, args...), gateway, hosts
}

var (
	sluiceOnce sync.Once
	sluiceBin  string
	sluiceErr  error
)

// sluiceBinary is $SLUICE_BIN, or the sluice command built once from this checkout.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("SLUICE_BIN"); b != "" {
		return b
	}
	sluiceOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-chart-test-")
		if err != nil {
			sluiceErr = err
			return
		}
		sluiceBin = filepath.Join(dir, "sluice")
		cmd := exec.Command("go", "build", "-o", sluiceBin, "./cmd/sluice")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			sluiceErr = &buildErr{err: err, out: string(out)}
		}
	})
	if sluiceErr != nil {
		t.Fatal(sluiceErr)
	}
	return sluiceBin
}

type buildErr struct {
	err error
	out string
}

func (e *buildErr) Error() string { return "go build ./cmd/sluice: " + e.err.Error() + "\n" + e.out }

func runSluice(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}
