package series

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodBody = `The frobnicator drops messages when the ring is full, and nobody
notices: count the drops and report them, like the receive queue
does.

Signed-off-by: A Developer <dev@example.org>
`

func mail(subject, body, diff string) string {
	return "From 1234 Mon Sep 17 00:00:00 2001\n" +
		"From: A Developer <dev@example.org>\n" +
		"Date: Wed, 25 Nov 2026 18:00:00 +0000\n" +
		"Subject: " + subject + "\n" +
		"\n" + body + "---\n" + diff
}

const goodDiff = ` net/netlink/af_netlink.c | 1 +
 1 file changed, 1 insertion(+)

diff --git a/net/netlink/af_netlink.c b/net/netlink/af_netlink.c
--- a/net/netlink/af_netlink.c
+++ b/net/netlink/af_netlink.c
@@ -1 +1,2 @@
 a
+b
-- 
2.39.5
`

const coverOK = "\n*** the cover ***\n\nMore text.\n\nbase-commit: 10b4c528419a\n"

func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseMailFoldedSubject(t *testing.T) {
	m, err := ParseMail("x.patch", []byte(mail("[PATCH net-next 04/11] netlink: deliver to the RX ring\n through COPY frames", goodBody, goodDiff)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "[PATCH net-next 04/11] netlink: deliver to the RX ring through COPY frames"; m.Subject != want {
		t.Errorf("Subject = %q, want %q", m.Subject, want)
	}
	if want := "netlink: deliver to the RX ring through COPY frames"; m.Summary() != want {
		t.Errorf("Summary = %q, want %q", m.Summary(), want)
	}
	if !strings.Contains(m.Body, "Signed-off-by:") || strings.Contains(m.Body, "diff --git") {
		t.Errorf("Body = %q", m.Body)
	}
	if !strings.Contains(m.Diff, "diff --git") {
		t.Errorf("Diff = %q", m.Diff)
	}
}

func TestParseMailNotAPatch(t *testing.T) {
	if _, err := ParseMail("notes.patch", []byte("just some text\n")); err == nil {
		t.Error("ParseMail of a file without headers succeeded")
	}
}

func TestCheck(t *testing.T) {
	cover := mail("[PATCH net-next 00/02] netlink: do things", coverOK, "")
	p1 := mail("[PATCH net-next 01/02] netlink: add a frobnicator", goodBody, goodDiff)
	p2 := mail("[PATCH net-next 02/02] netfilter: nfnetlink_queue: use the frobnicator", goodBody, goodDiff)

	tests := []struct {
		name  string
		files map[string]string
		n     int
		want  []string // substrings, one per expected problem
	}{
		{"good", map[string]string{CoverLetter: cover, "0001-a.patch": p1, "0002-b.patch": p2}, 2, nil},
		{"wrong count", map[string]string{CoverLetter: cover, "0001-a.patch": p1, "0002-b.patch": p2}, 11,
			[]string{"2 patches, the series has 11"}},
		{"no cover letter", map[string]string{"0001-a.patch": p1, "0002-b.patch": p2}, 2,
			[]string{"no 0000-cover-letter.patch"}},
		{"template cover letter", map[string]string{
			CoverLetter:    mail("[PATCH net-next 00/02] *** SUBJECT HERE ***", "\n*** BLURB HERE ***\n", ""),
			"0001-a.patch": p1, "0002-b.patch": p2}, 2,
			[]string{"subject is still the template's", "blurb is still the template's", "no base-commit line"}},
		{"no signoff", map[string]string{CoverLetter: cover,
			"0001-a.patch": mail("[PATCH net-next 01/02] netlink: add a frobnicator", strings.Replace(goodBody, "Signed-off-by", "Reviewed-by", 1), goodDiff),
			"0002-b.patch": p2}, 2,
			[]string{"0001-a.patch: no Signed-off-by"}},
		{"empty body", map[string]string{CoverLetter: cover,
			"0001-a.patch": mail("[PATCH net-next 01/02] netlink: add a frobnicator", "\nSigned-off-by: A <a@b>\n", goodDiff),
			"0002-b.patch": p2}, 2,
			[]string{"0001-a.patch: the commit message has 0 lines of text"}},
		{"long summary", map[string]string{CoverLetter: cover,
			"0001-a.patch": mail("[PATCH net-next 01/02] netlink: add a frobnicator whose summary is much too long to fit the limit of 75", goodBody, goodDiff),
			"0002-b.patch": p2}, 2,
			[]string{"summary is 80 characters"}},
		{"no prefix", map[string]string{CoverLetter: cover,
			"0001-a.patch": mail("[PATCH net-next 01/02] Add a frobnicator", goodBody, goodDiff),
			"0002-b.patch": p2}, 2,
			[]string{"does not start with a subsystem prefix"}},
		{"not imperative", map[string]string{CoverLetter: cover,
			"0001-a.patch": mail("[PATCH net-next 01/02] netlink: added a frobnicator", goodBody, goodDiff),
			"0002-b.patch": p2}, 2,
			[]string{"imperative"}},
		{"misnumbered", map[string]string{CoverLetter: cover,
			"0001-a.patch": p2, "0002-b.patch": p1}, 2,
			[]string{"numbered 02/02, want 1/2", "numbered 01/02, want 2/2"}},
		{"wrong tag", map[string]string{CoverLetter: cover,
			"0001-a.patch": strings.Replace(p1, "PATCH net-next", "PATCH RFC", 1), "0002-b.patch": p2}, 2,
			[]string{`subject tag "PATCH RFC", want "PATCH net-next"`}},
		{"no diff", map[string]string{CoverLetter: cover,
			"0001-a.patch": mail("[PATCH net-next 01/02] netlink: add a frobnicator", goodBody, ""), "0002-b.patch": p2}, 2,
			[]string{"0001-a.patch: no diff"}},
		{"nothing", map[string]string{}, 11, []string{"no patches"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := write(t, tt.files)
			probs, err := Check(Options{Dir: dir, Patches: tt.n, Tag: "PATCH net-next"})
			if err != nil {
				t.Fatal(err)
			}
			if len(probs) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(probs), len(tt.want), probs)
			}
			for i, w := range tt.want {
				if !strings.Contains(probs[i].String(), w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, probs[i], w)
				}
			}
		})
	}
}

// The series that is checked in must pass the checks that do not need a
// kernel tree.
func TestRepositorySeries(t *testing.T) {
	probs, err := Check(Options{Dir: "../../patches", Patches: 11, Tag: "PATCH net-next"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Error(p)
	}
}
