package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets a test run this binary's main in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("PETREL_KUBECTL_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// kubectl runs `petrel-kubectl args...` as a child process, without
// KUBECONFIG, and returns its exit code and stderr.
func kubectl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBECONFIG=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "PETREL_KUBECTL_TEST_MAIN=1", "HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("still running after 20 s; stderr: %s", stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestMissingKubeconfig: without an admin kubeconfig in the data dir,
// `petrel kubectl` names the file it looked for and says how to get one
// (kubectl alone said it could not reach localhost:8080).
func TestMissingKubeconfig(t *testing.T) {
	dir := t.TempDir()
	code, stderr := kubectl(t, "--data-dir", dir, "get", "pods")
	if code == 0 {
		t.Fatal("exit 0")
	}
	for _, want := range []string{filepath.Join(dir, "admin.kubeconfig"), "petrel up", "--data-dir"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	// What needs no cluster still works.
	if code, stderr := kubectl(t, "--data-dir", dir, "version", "--client"); code != 0 {
		t.Errorf("version --client: exit %d: %s", code, stderr)
	}
}
