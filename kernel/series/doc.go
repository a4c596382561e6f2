// Package series checks the patch series in patches/ the way a netdev
// maintainer looks at a series before applying it: the right number of
// patches and a cover letter naming its base, subjects of the form
// "[PATCH net-next NN/MM] subsystem: summary" with a summary of at most 75
// characters, a body that explains the change, a Signed-off-by, and
// scripts/checkpatch.pl --strict clean.
//
//	problems, err := series.Check(series.Options{Dir: "patches", Patches: 11})
//	for _, p := range problems {
//		fmt.Println(p)
//	}
//
// It reads the files git format-patch wrote; it does not apply or build
// them (package kernel does that).
package series
