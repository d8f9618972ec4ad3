package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeDemo runs `sluice serve --demo` as `make run` does without provider keys, executes
// the curl commands it prints, exactly as printed, and then stops it with SIGTERM: it must exit
// cleanly and take Envoy down with it.
func TestServeDemo(t *testing.T) {
	if os.Getenv("SLUICE_ENVOY_BIN") == "" {
		required(t, "SLUICE_ENVOY_BIN")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		required(t, "curl")
	}
	dir := t.TempDir()
	bin, err := sluiceBinary(dir)
	if err != nil {
		t.Fatal(err)
	}
	listen, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	adminAddr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--demo", "--listen", listen, "--admin-listen", adminAddr,
		"--state-dir", filepath.Join(dir, "state"), "--envoy", os.Getenv("SLUICE_ENVOY_BIN"), "--envoy-concurrency", "1")
	cmd.Env = append(os.Environ(), "OPENAI_API_KEY=", "ANTHROPIC_API_KEY=")
	cmd.Stderr = logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("sluice output:\n%s", logs.tail(8<<10))
		}
	})

	// Collect what serve prints until it goes quiet after the ready banner's last line.
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	var printed []string
	deadline := time.After(90 * time.Second)
collect:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited before printing its banner: %v", <-exited)
			}
			printed = append(printed, l)
			if strings.Contains(l, "import openai") { // the banner's last line
				break collect
			}
		case <-deadline:
			t.Fatalf("no ready banner after 90s; got:\n%s", strings.Join(printed, "\n"))
		}
	}
	if !strings.HasPrefix(printed[0], "sluice: ready on http://"+listen) {
		t.Fatalf("first line %q is not the ready line", printed[0])
	}

	// Each printed curl command spans the lines up to the one without a trailing backslash.
	var curls []string
	for i := 0; i < len(printed); i++ {
		if !strings.HasPrefix(strings.TrimSpace(printed[i]), "curl ") {
			continue
		}
		c := printed[i]
		for strings.HasSuffix(c, `\`) && i+1 < len(printed) {
			i++
			c += "\n" + printed[i]
		}
		curls = append(curls, c)
	}
	if len(curls) != 2 {
		t.Fatalf("want 2 printed curl commands, got %d:\n%s", len(curls), strings.Join(printed, "\n"))
	}
	for _, c := range curls {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "bash", "-c", c).Output()
		cancel()
		if err != nil {
			t.Fatalf("printed command failed: %v\n%s", err, c)
		}
		var resp struct {
			Choices []struct{ Message struct{ Content string } }
			Content []struct{ Text string }
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("printed command did not return JSON: %s", out)
		}
		text := ""
		if len(resp.Choices) > 0 {
			text = resp.Choices[0].Message.Content
		} else if len(resp.Content) > 0 {
			text = resp.Content[0].Text
		}
		if text == "" {
			t.Fatalf("printed command returned no completion: %s", out)
		}
	}

	// The banner's admin line works as printed: the CLI mints a key that the gateway accepts.
	var export string
	for _, l := range printed {
		if strings.Contains(l, "export SLUICE_URL=") {
			export = strings.TrimSpace(l)
		}
	}
	if export == "" {
		t.Fatalf("no admin API line in the banner:\n%s", strings.Join(printed, "\n"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	out, err := exec.CommandContext(ctx, "bash", "-c", export+" && "+bin+" virtual-keys create --name from-cli --format json").Output()
	cancel()
	if err != nil {
		t.Fatalf("CLI with the printed environment: %v", err)
	}
	var k struct{ Secret string }
	if err := json.Unmarshal(out, &k); err != nil || k.Secret == "" {
		t.Fatalf("CLI output: %s", out)
	}
	eventually(t, "http://"+listen, k.Secret, 200, "", 5*time.Second)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // keep draining so serve never blocks on stdout
		}
	}()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve did not exit cleanly on SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit within 30s of SIGTERM")
	}
	// Envoy went with it: nothing listens on the client port any more.
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts connections after serve exited")
	}
}
