package ring_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// Dump the links of the system through the rings: the request goes out
// through the TX ring, the answers come back in the RX ring.
func Example() {
	p, err := ring.ParamsFor(16384, 32)
	if err != nil {
		log.Fatal(err)
	}
	c, err := ring.Dial(unix.NETLINK_ROUTE, ring.Config{RX: p, TX: p})
	if errors.Is(err, ring.ErrNotSupported) {
		fmt.Println("no memory-mapped netlink; use a plain socket")
		return
	} else if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	req := nlmsg.Message{
		Header: nlmsg.Header{Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1},
		Data:   make([]byte, unix.SizeofIfInfomsg),
	}
	if err := c.Send(req.Append(nil)); err != nil {
		log.Fatal(err)
	}
	for links := 0; ; {
		rec, err := c.Receive()
		if err != nil {
			log.Fatal(err)
		}
		msgs, err := nlmsg.Parse(rec.Data)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range msgs {
			switch {
			case m.Err() != nil:
				log.Fatal(m.Err())
			case m.Type == unix.NLMSG_DONE:
				fmt.Println(links, "links")
				return
			case m.Type == unix.RTM_NEWLINK:
				links++
			}
		}
	}
}

// Keep some datagrams while reading on: a held frame stays valid, and the
// kernel walks around it, until it is released.
func ExampleConn_Next() {
	var c *ring.Conn // from ring.Dial
	var kept []ring.Frame
	for len(kept) < 8 {
		f, err := c.Next()
		if err != nil {
			log.Fatal(err)
		}
		if len(f.Data()) > 100 {
			f.Hold()
			kept = append(kept, f)
			continue
		}
		f.Release()
	}
	for _, f := range kept {
		fmt.Println(len(f.Data()))
		f.Release()
	}
}
