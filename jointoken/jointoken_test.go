package jointoken

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	for _, row := range []struct {
		in      string
		want    Token
		wantErr string
	}{
		{in: "K10" + hash + "::abcdef.0123456789abcdef", want: Token{CAHash: hash, ID: "abcdef", Secret: "0123456789abcdef"}},
		{in: "abcdef.0123456789abcdef\n", want: Token{ID: "abcdef", Secret: "0123456789abcdef"}},
		{in: "K10" + hash + "abcdef.0123456789abcdef", wantErr: "K10<ca-hash>::"},
		{in: "K10abc::abcdef.0123456789abcdef", wantErr: "64 hex digits"},
		{in: "K10" + hash + "::server:password", wantErr: "bootstrap token"},
		{in: "ABCDEF.0123456789abcdef", wantErr: "bootstrap token"},
		{in: "abcdef.0123", wantErr: "bootstrap token"},
	} {
		got, err := Parse(row.in)
		if row.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), row.wantErr) {
				t.Errorf("Parse(%q) = %v, %v; want error with %q", row.in, got, err, row.wantErr)
			}
			continue
		}
		if err != nil || got != row.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", row.in, got, err, row.want)
		}
		if again, _ := Parse(got.String()); again != got {
			t.Errorf("String() does not round-trip: %q", got.String())
		}
	}
}

func TestGenerate(t *testing.T) {
	tok, err := Generate("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(tok.String()); err != nil || tok.CAHash != "" {
		t.Fatalf("generated token %q does not parse: %v", tok, err)
	}
}
