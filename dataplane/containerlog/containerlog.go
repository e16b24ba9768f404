// Package containerlog writes and reads container logs in the CRI logging
// format that kubelets use ("<RFC3339Nano time> <stream> <F|P> <text>" per
// line). The writer runs as containerd's logging binary, a child of the
// container's shim, so logging goes on while the node daemon is down; the
// reader serves `kubectl logs` with --tail, --since, --timestamps and -f.
package containerlog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// LoggerName is the name the petrel binary answers to as a logging binary.
const LoggerName = "petrel-logger"

// maxLine splits longer output into partial (P) lines, as the CRI does.
const maxLine = 16 * 1024

// RunLogger is the logging binary's main. As containerd's logging binary,
// the shim hands it the container's stdout and stderr as fds 3 and 4 and
// waits for fd 5 to close. Started by the kubelet itself for a container
// with stdin and no terminal (which containerd's logging binaries cannot
// serve), it reads the named pipes given as "stdout" and "stderr" instead.
// Args are pairs: "path" and the log file; optionally "attach" and the
// socket to serve the raw output on. It returns when both streams end.
func RunLogger(args []string) error {
	opts := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		opts[args[i]] = args[i+1]
	}
	path := opts["path"]
	if path == "" {
		return errors.New("petrel-logger: no path argument")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	h := newHub()
	if sock := opts["attach"]; sock != "" {
		ln, err := listenAttach(sock)
		if err != nil {
			return err
		}
		defer os.Remove(sock)
		defer ln.Close()
		go h.serve(ln)
	}
	var streams [2]io.Reader
	if opts["stdout"] != "" {
		// Named pipes: opening each waits for the shim to open its end.
		for i, name := range []string{opts["stdout"], opts["stderr"]} {
			p, err := os.OpenFile(name, os.O_RDONLY, 0)
			if err != nil {
				return fmt.Errorf("open %s: %w", name, err)
			}
			defer p.Close()
			streams[i] = p
		}
	} else {
		streams[0], streams[1] = os.NewFile(3, "stdout"), os.NewFile(4, "stderr")
		if err := os.NewFile(5, "ready").Close(); err != nil {
			return fmt.Errorf("signal readiness: %w", err)
		}
	}
	w := &Writer{out: f}
	var wg sync.WaitGroup
	for i, s := range []struct {
		name string
		kind byte
	}{{"stdout", frameStdout}, {"stderr", frameStderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Copy(s.name, io.TeeReader(streams[i], streamTee{h: h, kind: s.kind}))
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// containerd's shim closes the pipes and then sends SIGTERM at once:
	// dying of it lost a last line without a newline, which is written only
	// at the streams' end (or 100 ms on). The streams are left to end, for
	// a moment, so that it is written.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case <-done:
	case <-sigs:
		select {
		case <-done:
		case <-time.After(termGrace):
		}
	}
	h.close()
	return nil
}

// termGrace is how long the logger, told to stop, waits for its streams to
// end and their last lines to be written.
const termGrace = time.Second

// Writer writes CRI log lines from several streams to one file.
type Writer struct {
	mu  sync.Mutex
	out io.Writer
	now func() time.Time
}

// NewWriter writes to out.
func NewWriter(out io.Writer) *Writer { return &Writer{out: out} }

// partialFlush is how long output without a newline waits for more before
// it is written as a partial line: the shim holds the container's pipe
// open until the task is deleted, so the last words of a process that ends
// without a newline ("echo -n DONE; false") would otherwise reach the log
// only then, too late for its termination message.
const partialFlush = 100 * time.Millisecond

// Copy reads stream until EOF and writes each line with its time: F for
// a line its newline ended, P for a piece of a longer line and for output
// that stopped without a newline (written after partialFlush, or at EOF),
// so a reader puts back exactly what was written, as with containerd's CRI
// logs.
func (w *Writer) Copy(stream string, r io.Reader) error {
	chunks := make(chan []byte)
	errc := make(chan error, 1)
	go func() {
		// One read buffer; each chunk sent is a copy of what was read, so a
		// container's output costs its own size, not a buffer per read.
		b := make([]byte, 32*1024)
		for {
			n, err := r.Read(b)
			if n > 0 {
				chunks <- append([]byte(nil), b[:n]...)
			}
			if err != nil {
				errc <- err
				close(chunks)
				return
			}
		}
	}()
	var pending []byte
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case b, ok := <-chunks:
			if !ok {
				if len(pending) > 0 {
					if err := w.writeLine(stream, "P", pending); err != nil {
						return err
					}
				}
				if err := <-errc; !errors.Is(err, io.EOF) {
					return err
				}
				return nil
			}
			var err error
			if pending, err = w.writeLines(stream, append(pending, b...)); err != nil {
				return err
			}
			pending = append([]byte(nil), pending...)
			timer.Reset(partialFlush)
		case <-timer.C:
			if len(pending) > 0 {
				if err := w.writeLine(stream, "P", pending); err != nil {
					return err
				}
				pending = nil
			}
		}
	}
}

// writeLines writes the complete lines of buf (F), and pieces of maxLine
// of a longer one (P), and returns what is left: the start of a line.
func (w *Writer) writeLines(stream string, buf []byte) ([]byte, error) {
	for {
		i := bytes.IndexByte(buf, '\n')
		switch {
		case (i < 0 || i >= maxLine) && len(buf) >= maxLine:
			if err := w.writeLine(stream, "P", buf[:maxLine]); err != nil {
				return nil, err
			}
			buf = buf[maxLine:]
		case i >= 0:
			if err := w.writeLine(stream, "F", bytes.TrimSuffix(buf[:i], []byte{'\r'})); err != nil {
				return nil, err
			}
			buf = buf[i+1:]
		default:
			return buf, nil
		}
	}
}

// writeLine writes one CRI log line: time, stream, tag and text.
func (w *Writer) writeLine(stream, tag string, text []byte) error {
	now := time.Now
	if w.now != nil {
		now = w.now
	}
	buf := make([]byte, 0, len(text)+64)
	buf = now().UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, stream...)
	buf = append(buf, ' ')
	buf = append(buf, tag...)
	buf = append(buf, ' ')
	buf = append(buf, text...)
	buf = append(buf, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.out.Write(buf)
	return err
}

// Entry is one parsed log line.
type Entry struct {
	Time    time.Time
	Stream  string
	Partial bool
	Text    []byte
}

// Parse reads one CRI log line (without its newline).
func Parse(line []byte) (Entry, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Entry{}, fmt.Errorf("log line without a time: %q", line)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Entry{}, err
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return Entry{}, fmt.Errorf("log line without a stream: %q", line)
	}
	tag, text, _ := bytes.Cut(rest, []byte{' '})
	return Entry{Time: t, Stream: string(stream), Partial: string(tag) == "P", Text: text}, nil
}

// Options select what Read writes, as the kubelet's log query does.
type Options struct {
	// TailLines keeps only the last n lines; negative keeps all.
	TailLines int64
	// Since drops lines older than it.
	Since time.Time
	// Timestamps prefixes each line with its time.
	Timestamps bool
	// LimitBytes stops after that many bytes; 0 is no limit.
	LimitBytes int64
	// Follow keeps reading as the file grows until Done says the writer
	// has finished (or ctx ends).
	Follow bool
	Done   func() bool
}

// Read writes the log at path to out as the options say.
func Read(ctx context.Context, path string, out io.Writer, o Options) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	start := int64(0)
	if o.TailLines >= 0 {
		if start, err = tailOffset(f, o.TailLines); err != nil {
			return err
		}
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return err
	}
	var written int64
	br := bufio.NewReader(f)
	var pending []byte
	for {
		chunk, err := br.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == nil {
			line := bytes.TrimSuffix(pending, []byte{'\n'})
			pending = pending[:0]
			e, perr := Parse(line)
			if perr != nil || e.Time.Before(o.Since) {
				continue
			}
			var b []byte
			if o.Timestamps {
				b = append(e.Time.AppendFormat(b, time.RFC3339Nano), ' ')
			}
			b = append(b, e.Text...)
			if !e.Partial {
				b = append(b, '\n')
			}
			if o.LimitBytes > 0 && written+int64(len(b)) > o.LimitBytes {
				b = b[:o.LimitBytes-written]
			}
			n, werr := out.Write(b)
			written += int64(n)
			if werr != nil {
				return werr
			}
			if fl, ok := out.(interface{ Flush() }); ok && o.Follow {
				fl.Flush()
			}
			if o.LimitBytes > 0 && written >= o.LimitBytes {
				return nil
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		// At the end: done unless following a writer that goes on.
		if !o.Follow || (o.Done != nil && o.Done()) {
			if o.Follow {
				// One last look: the writer may have finished after our read.
				if more, _ := br.Peek(1); len(more) > 0 {
					continue
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tailOffset is where the last n lines of f begin.
func tailOffset(f *os.File, n int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if n == 0 {
		return size, nil
	}
	const block = 8192
	buf := make([]byte, block)
	var lines int64
	end := size
	for end > 0 {
		startAt := max(0, end-block)
		chunk := buf[:end-startAt]
		if _, err := f.ReadAt(chunk, startAt); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' || startAt+int64(i) == size-1 {
				continue
			}
			lines++
			if lines == n {
				return startAt + int64(i) + 1, nil
			}
		}
		end = startAt
	}
	return 0, nil
}
