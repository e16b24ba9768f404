package containerlog

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeLog(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &Writer{out: f, now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	if err := w.Copy("stdout", strings.NewReader(strings.Join(lines, "\n")+"\n")); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadOptions(t *testing.T) {
	path := writeLog(t, "one", "two", "three", "four")
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"all", Options{TailLines: -1}, "one\ntwo\nthree\nfour\n"},
		{"tail 2", Options{TailLines: 2}, "three\nfour\n"},
		{"tail 0", Options{TailLines: 0}, ""},
		{"tail more than there is", Options{TailLines: 10}, "one\ntwo\nthree\nfour\n"},
		{"since", Options{TailLines: -1, Since: time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)}, "three\nfour\n"},
		{"timestamps", Options{TailLines: 1, Timestamps: true}, "2026-01-01T00:00:04Z four\n"},
		{"limit bytes", Options{TailLines: -1, LimitBytes: 6}, "one\ntw"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		if err := Read(context.Background(), path, &out, c.o); err != nil {
			t.Fatal(err)
		}
		if out.String() != c.want {
			t.Errorf("%s: got %q, want %q", c.name, out.String(), c.want)
		}
	}
}

func TestLongLinesArePartial(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	path := writeLog(t, long)
	b, _ := os.ReadFile(path)
	if got := strings.Count(string(b), " stdout P "); got != 1 {
		t.Fatalf("want one partial line, got %d in %q", got, b[:80])
	}
	var out bytes.Buffer
	if err := Read(context.Background(), path, &out, Options{TailLines: -1}); err != nil {
		t.Fatal(err)
	}
	if out.String() != long+"\n" {
		t.Fatalf("the long line did not come back whole (%d bytes)", out.Len())
	}
}

func TestFollowUntilDone(t *testing.T) {
	path := writeLog(t, "first")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = NewWriter(f).Copy("stderr", strings.NewReader("second\n"))
		close(done)
	}()
	var out bytes.Buffer
	isDone := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	if err := Read(context.Background(), path, &out, Options{TailLines: -1, Follow: true, Done: isDone}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "first\nsecond\n" {
		t.Fatalf("followed %q", out.String())
	}
}

// TestOutputWithoutNewlineIsWrittenSoon: a process's last words without a
// newline reach the log while its pipe is still open (the shim keeps it
// until the task is deleted), as a partial line that reads back as written.
func TestOutputWithoutNewlineIsWrittenSoon(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	var out syncBuffer
	w := NewWriter(&out)
	go func() { _ = w.Copy("stdout", pr) }()
	if _, err := pw.Write([]byte("line\nDONE")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(out.String(), " stdout P DONE\n") {
		if time.Now().After(deadline) {
			t.Fatalf("log %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out.String(), " stdout F line\n") {
		t.Fatalf("log %q", out.String())
	}
}
