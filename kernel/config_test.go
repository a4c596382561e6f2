package kernel

import (
	"errors"
	"strings"
	"testing"
)

func mustFragment(t *testing.T, name, text string) *Fragment {
	t.Helper()
	f, err := ParseFragment(name, []byte(text))
	if err != nil {
		t.Fatalf("ParseFragment(%s): %v", name, err)
	}
	return f
}

func TestParseFragment(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []string // Option.String() of each option
		wantErr string
	}{
		{
			name: "all kinds",
			text: "# comment\n\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=n\nCONFIG_E=\"-nlmmap\"\nCONFIG_F=64\nCONFIG_G=0x1000\n",
			want: []string{"CONFIG_A=y", "CONFIG_B=m", "# CONFIG_C is not set", "# CONFIG_D is not set", `CONFIG_E="-nlmmap"`, "CONFIG_F=64", "CONFIG_G=0x1000"},
		},
		{name: "garbage", text: "CONFIG_A=y\nA=y\n", wantErr: `f.config:2: "A=y" is neither`},
		{name: "duplicate", text: "CONFIG_A=y\n# CONFIG_A is not set\n", wantErr: "f.config:2: CONFIG_A is already set on line 1"},
		{name: "unterminated string", text: "CONFIG_S=\"abc\n", wantErr: "unterminated string"},
		{name: "empty value", text: "CONFIG_S=\n", wantErr: "empty value"},
		{name: "unquoted blanks", text: "CONFIG_S=a b\n", wantErr: "quote strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFragment("f.config", []byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFragment error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range f.Options {
				got = append(got, o.String())
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("options = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	base := []byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n# a comment\n")
	f1 := mustFragment(t, "one.config", "CONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"x\"\n")
	f2 := mustFragment(t, "two.config", "CONFIG_D=\"y\"\n")
	got := string(Merge(base, f1, f2))
	want := "CONFIG_A=y\n# a comment\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"y\"\n"
	if got != want {
		t.Errorf("Merge =\n%s\nwant\n%s", got, want)
	}
}

func TestCheck(t *testing.T) {
	cfg, err := ParseConfig([]byte(`CONFIG_64BIT=y
CONFIG_SMP=y
CONFIG_NR_CPUS=8
CONFIG_LOCALVERSION="-nlmmap"
# CONFIG_LOCALVERSION_AUTO is not set
# CONFIG_SLUB_TINY is not set
CONFIG_KASAN=y
CONFIG_PANIC_ON_OOPS=y
CONFIG_DUMMY=m
CONFIG_BASE=0x1000
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		frag string
		want []string // mismatch strings, in order
	}{
		{name: "all stick", frag: "CONFIG_64BIT=y\nCONFIG_SMP=y\nCONFIG_NR_CPUS=8\nCONFIG_LOCALVERSION=\"-nlmmap\"\n# CONFIG_LOCALVERSION_AUTO is not set\nCONFIG_DUMMY=m\nCONFIG_BASE=0X1000\n"},
		{name: "n matches is-not-set", frag: "CONFIG_SLUB_TINY=n\n"},
		{name: "n matches absent", frag: "# CONFIG_NOT_IN_TREE is not set\n"},
		{
			name: "bogus option is named",
			frag: "CONFIG_SMP=y\nCONFIG_NLMMAP_BOGUS=y\n",
			want: []string{"CONFIG_NLMMAP_BOGUS=y (asked by f.config:2): absent from .config"},
		},
		{
			name: "y wanted, not set",
			frag: "CONFIG_SLUB_TINY=y\n",
			want: []string{"CONFIG_SLUB_TINY=y (asked by f.config:1): is not set"},
		},
		{
			name: "n wanted, is y",
			frag: "# CONFIG_PANIC_ON_OOPS is not set\n",
			want: []string{"# CONFIG_PANIC_ON_OOPS is not set (asked by f.config:1): is CONFIG_PANIC_ON_OOPS=y"},
		},
		{
			name: "y wanted, is m",
			frag: "CONFIG_DUMMY=y\n",
			want: []string{"CONFIG_DUMMY=y (asked by f.config:1): is CONFIG_DUMMY=m"},
		},
		{
			name: "string differs",
			frag: "CONFIG_LOCALVERSION=\"-other\"\n",
			want: []string{`CONFIG_LOCALVERSION="-other" (asked by f.config:1): is CONFIG_LOCALVERSION="-nlmmap"`},
		},
		{
			name: "number differs",
			frag: "CONFIG_NR_CPUS=2\n",
			want: []string{"CONFIG_NR_CPUS=2 (asked by f.config:1): is CONFIG_NR_CPUS=8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(cfg, mustFragment(t, "f.config", tt.frag))
			if len(got) != len(tt.want) {
				t.Fatalf("Check = %v, want %d mismatches %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i].String(), tt.want[i]) {
					t.Errorf("mismatch %d = %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestCheckLaterFragmentWins(t *testing.T) {
	cfg := Config{"A": "y"}
	f1 := mustFragment(t, "one.config", "# CONFIG_A is not set\n")
	f2 := mustFragment(t, "two.config", "CONFIG_A=y\n")
	if got := Check(cfg, f1, f2); len(got) != 0 {
		t.Errorf("Check = %v, want no mismatch (two.config overrides one.config)", got)
	}
}

func TestConfigErrorMentionsBaselineForNetlinkMmap(t *testing.T) {
	// Without patch 01 the mmap fragment cannot stick: the error must name
	// the option and say what to do.
	frag := mustFragment(t, "mmap.config", "CONFIG_NETLINK_MMAP=y\n")
	var err error = &ConfigError{Mismatches: Check(Config{"NET": "y"}, frag), ConfigPath: "/b/.config"}
	for _, want := range []string{"CONFIG_NETLINK_MMAP=y (asked by mmap.config:1)", "FLAVOR=baseline", "/b/.config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Error("not a *ConfigError")
	}
}
