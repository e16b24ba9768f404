// Package images builds Petrel's local test images as OCI archives, with no
// registry and no container engine: a single layer holding busybox-static
// (with a link per applet) and the Go test server, written as an OCI image
// layout and tarred so that `petrelctl image import` and containerd's
// importer take it.
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestServer is the name of the main test image.
const TestServer = "petrel.local/testserver:1"

// Busybox is where Debian's busybox-static puts its binary.
const Busybox = "/bin/busybox"

// BuildTestServer writes the test server image to outDir/testserver.tar and
// returns the archive's path.
func BuildTestServer(ctx context.Context, outDir string) (string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(outDir, "testserver.bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/petrel-project/petrel/test/images/testserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the test server: %w\n%s", err, out)
	}
	defer os.Remove(bin)
	files := []layerFile{{path: "testserver", from: bin, mode: 0o755}}
	bb, err := busyboxFiles(ctx)
	if err != nil {
		return "", err
	}
	files = append(files, bb...)
	img := ocispec.ImageConfig{
		Entrypoint:   []string{"/testserver"},
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		WorkingDir:   "/",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "9000/tcp": {}, "9000/udp": {}},
	}
	out := filepath.Join(outDir, "testserver.tar")
	return out, writeArchive(out, TestServer, img, files)
}

// layerFile is one entry of the image's only layer.
type layerFile struct {
	path string // inside the image, without a leading slash
	from string // host file to copy; empty for a directory or link
	link string // symlink target
	body string // literal content when from and link are empty and dir is false
	dir  bool
	mode int64
}

// busyboxFiles is busybox and a symlink per applet, plus the few files a
// shell image needs.
func busyboxFiles(ctx context.Context) ([]layerFile, error) {
	out, err := exec.CommandContext(ctx, Busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full (install busybox-static): %w", Busybox, err)
	}
	files := []layerFile{
		{path: "bin", dir: true, mode: 0o755}, {path: "sbin", dir: true, mode: 0o755},
		{path: "usr", dir: true, mode: 0o755}, {path: "usr/bin", dir: true, mode: 0o755}, {path: "usr/sbin", dir: true, mode: 0o755},
		{path: "etc", dir: true, mode: 0o755}, {path: "tmp", dir: true, mode: 0o1777}, {path: "root", dir: true, mode: 0o700},
		{path: "bin/busybox", from: Busybox, mode: 0o755},
		{path: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", mode: 0o644},
		{path: "etc/group", body: "root:x:0:\nnogroup:x:65534:\n", mode: 0o644},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "bin/busybox" || applet == "" {
			continue
		}
		// Links are relative to the image root, so they resolve inside it.
		files = append(files, layerFile{path: applet, link: "/bin/busybox"})
	}
	return files, nil
}

// writeArchive writes an OCI image layout holding one image named name as a
// tar file.
func writeArchive(out, name string, cfg ocispec.ImageConfig, files []layerFile) error {
	layer, diffID, err := buildLayer(files)
	if err != nil {
		return err
	}
	blobs := map[digest.Digest][]byte{}
	add := func(mediaType string, b []byte) ocispec.Descriptor {
		d := digest.FromBytes(b)
		blobs[d] = b
		return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
	}
	layerDesc := add(ocispec.MediaTypeImageLayerGzip, layer)
	epoch := time.Unix(0, 0).UTC()
	configJSON, err := json.Marshal(ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	})
	if err != nil {
		return err
	}
	configDesc := add(ocispec.MediaTypeImageConfig, configJSON)
	manifestJSON, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: configDesc, Layers: []ocispec.Descriptor{layerDesc}})
	if err != nil {
		return err
	}
	manifestDesc := add(ocispec.MediaTypeImageManifest, manifestJSON)
	manifestDesc.Platform = &ocispec.Platform{Architecture: "amd64", OS: "linux"}
	tag := name[strings.LastIndex(name, ":")+1:]
	manifestDesc.Annotations = map[string]string{"io.containerd.image.name": name, ocispec.AnnotationRefName: tag}
	indexJSON, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc}})
	if err != nil {
		return err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(path string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := put(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := put("index.json", indexJSON); err != nil {
		return err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, string(d))
	}
	sort.Strings(digests)
	for _, d := range digests {
		dg := digest.Digest(d)
		if err := put(filepath.Join("blobs", dg.Algorithm().String(), dg.Encoded()), blobs[dg]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// buildLayer returns the gzipped layer and the digest of its uncompressed
// tar (the diff ID).
func buildLayer(files []layerFile) ([]byte, digest.Digest, error) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, h))
	epoch := time.Unix(0, 0).UTC()
	for _, f := range files {
		hdr := &tar.Header{Name: f.path, Mode: f.mode, ModTime: epoch, Typeflag: tar.TypeReg}
		var body []byte
		switch {
		case f.dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, f.path+"/"
		case f.link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.link, 0o777
		case f.from != "":
			b, err := os.ReadFile(f.from)
			if err != nil {
				return nil, "", err
			}
			body = b
		default:
			body = []byte(f.body)
		}
		hdr.Size = int64(len(body))
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), nil
}
