package hostdeps

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func fakeHost(have map[string]bool, root bool) (*Host, *[]string) {
	var ran []string
	h := &Host{
		LookPath: func(p string) (string, error) {
			if have[p] {
				return "/usr/bin/" + p, nil
			}
			return "", errors.New("not found")
		},
		Exists: func(p string) bool { return have[p] },
		IsRoot: root,
		HasApt: true,
	}
	h.Run = func(w io.Writer, name string, args ...string) error {
		ran = append(ran, name+" "+strings.Join(args, " "))
		if len(args) > 0 && args[0] == "install" {
			for _, a := range args[1:] {
				switch a {
				case "gcc":
					have["gcc"] = true
				case "libelf-dev":
					have["/usr/include/gelf.h"] = true
				}
			}
		}
		return nil
	}
	return h, &ran
}

func TestEnsure(t *testing.T) {
	deps := []Dep{
		{Program: "gcc", Package: "gcc"},
		{Program: "make", Package: "make"},
		{File: "/usr/include/gelf.h", Package: "libelf-dev"},
	}
	tests := []struct {
		name    string
		have    map[string]bool
		root    bool
		wantErr []string // substrings
		wantRun int
	}{
		{name: "all present", have: map[string]bool{"gcc": true, "make": true, "/usr/include/gelf.h": true}},
		{
			name:    "not root prints the command",
			have:    map[string]bool{"make": true},
			wantErr: []string{"missing on this host: gcc, /usr/include/gelf.h", "sudo apt-get update && sudo apt-get install -y gcc libelf-dev"},
		},
		{name: "root installs", have: map[string]bool{"make": true}, root: true, wantRun: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ran := fakeHost(tt.have, tt.root)
			err := h.Ensure(io.Discard, deps...)
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			for _, s := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("Ensure error = %v, want it to contain %q", err, s)
				}
			}
			if len(*ran) != tt.wantRun {
				t.Errorf("ran %q, want %d commands", *ran, tt.wantRun)
			}
		})
	}
}

func TestEnsureInstallDoesNotHelp(t *testing.T) {
	h, _ := fakeHost(map[string]bool{}, true)
	err := h.Ensure(io.Discard, Dep{Program: "bison", Package: "bison"})
	var me *MissingError
	if !errors.As(err, &me) || me.Cause == nil || !strings.Contains(err.Error(), "still missing") {
		t.Fatalf("Ensure = %v, want a MissingError saying bison is still missing", err)
	}
}
