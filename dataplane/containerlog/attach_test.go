package containerlog

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The logger reading named pipes (a container with stdin and no
// terminal) writes the CRI log and serves the raw output, unsplit by
// lines, to an attached client, on a socket path too long for a socket
// address.
func TestLoggerServesRawOutputToAttach(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stdoutPipe, stderrPipe := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	for _, p := range []string{stdoutPipe, stderrPipe} {
		if err := unix.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logPath, sock := filepath.Join(dir, "0.log"), filepath.Join(dir, "attach")
	loggerDone := make(chan error, 1)
	go func() {
		loggerDone <- RunLogger([]string{"path", logPath, "attach", sock, "stdout", stdoutPipe, "stderr", stderrPipe})
	}()
	// The shim's side: opened in the order the logger opens them.
	stdout, err := os.OpenFile(stdoutPipe, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.OpenFile(stderrPipe, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the attach socket", func() bool { _, err := os.Stat(sock); return err == nil })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	copyOut, err := Attach(ctx, sock, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan error, 1)
	go func() { copied <- copyOut() }()

	if _, err := stdout.WriteString("/ # "); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the prompt without a newline", func() bool { return out.String() == "/ # " })
	if _, err := stderr.WriteString("oops\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stderr", func() bool { return errOut.String() == "oops\n" })
	stdout.Close()
	stderr.Close()
	if err := <-loggerDone; err != nil {
		t.Fatalf("logger: %v", err)
	}
	select {
	case err := <-copied:
		if err != nil {
			t.Fatalf("attach copy: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("attach did not end with the container's output")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("attach socket left behind: %v", err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	// The prompt ended without a newline: a partial (P) line, so that a
	// reader gives back "/ # " and not "/ # \n".
	if !strings.Contains(log, " stdout P / # \n") || !strings.Contains(log, " stderr F oops\n") {
		t.Errorf("log file:\n%s", log)
	}
	if _, err := Attach(ctx, sock, nil, nil); err != ErrNoAttachSocket {
		t.Errorf("attach after the logger ended: %v, want ErrNoAttachSocket", err)
	}
}

// TestLoggerWritesTheLastPartialLineWhenTerminated: the shim closes the
// pipes and sends SIGTERM at once; the output's last piece without a
// newline is still in the log (it was lost when the logger died of the
// signal first).
func TestLoggerWritesTheLastPartialLineWhenTerminated(t *testing.T) {
	if args := os.Getenv("PETREL_TEST_LOGGER_ARGS"); args != "" {
		if err := RunLogger(strings.Split(args, "\n")); err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	}
	dir := t.TempDir()
	stdoutPipe, stderrPipe := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	for _, p := range []string{stdoutPipe, stderrPipe} {
		if err := unix.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(dir, "0.log")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoggerWritesTheLastPartialLineWhenTerminated$")
	cmd.Env = append(os.Environ(), "PETREL_TEST_LOGGER_ARGS="+strings.Join([]string{"path", logPath, "stdout", stdoutPipe, "stderr", stderrPipe}, "\n"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdout, err := os.OpenFile(stdoutPipe, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.OpenFile(stderrPipe, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stdout.WriteString("projected-volume-data"); err != nil {
		t.Fatal(err)
	}
	// The signal may come before the logger has seen the end.
	time.Sleep(20 * time.Millisecond)
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	stdout.Close()
	stderr.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logger: %v", err)
	}
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), " stdout P projected-volume-data") {
		t.Fatalf("the last partial line is not in the log: %q", b)
	}
}
