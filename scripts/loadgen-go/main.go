// loadgen-go: a second load generator, independent of hubbub-load (other language, other
// WebSocket client: gorilla/websocket, other scheduler), to check hubbub-load's numbers.
// Same cases and the same report lines: N clients in one room, S senders at a fixed rate or
// in a closed loop, latency from the sender's clock to the receiver's (one process), and the
// server's and the generator's own CPU from /proc.
//
//	scripts/bench-crosscheck.sh builds and runs it (Debian's Go and gorilla/websocket).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

var (
	url      = flag.String("url", "ws://127.0.0.1:18100/ws", "WebSocket URL")
	protocol = flag.String("protocol", "hubbub", "hubbub or seed001")
	clients  = flag.Int("clients", 1000, "clients that connect and read")
	senders  = flag.Int("senders", 10, "how many of them also send")
	rate     = flag.Float64("rate", 1, "messages per second per sender")
	closed   = flag.Bool("closed-loop", false, "each sender waits for its own message to come back")
	size     = flag.Int("size", 100, "message text length in bytes")
	seconds  = flag.Float64("seconds", 10, "how long to send")
	pid      = flag.Int("pid", 0, "the server's pid, for its CPU")
	label    = flag.String("label", "", "a label for the report")
)

// A log-scaled latency histogram (about 2% resolution), in microseconds.
const growth = 1.02

var buckets [1200]atomic.Uint64
var maxUs atomic.Uint64

func record(us uint64) {
	i := int(math.Log(float64(us+1)) / math.Log(growth))
	if i >= len(buckets) {
		i = len(buckets) - 1
	}
	buckets[i].Add(1)
	for {
		m := maxUs.Load()
		if us <= m || maxUs.CompareAndSwap(m, us) {
			return
		}
	}
}

func percentile(p float64) float64 {
	var total uint64
	for i := range buckets {
		total += buckets[i].Load()
	}
	if total == 0 {
		return math.NaN()
	}
	target := uint64(math.Ceil(float64(total) * p))
	var seen uint64
	for i := range buckets {
		seen += buckets[i].Load()
		if seen >= target {
			return math.Pow(growth, float64(i+1)) - 1
		}
	}
	return float64(maxUs.Load())
}

var (
	start     = time.Now()
	measuring atomic.Bool
	delivered atomic.Uint64
	sent      atomic.Uint64
	gone      atomic.Uint64
)

var hubbubToken = []byte(`"text":"lg `)

// The "lg sender seq µs ..." text in a frame, found without parsing the JSON.
func payload(frame []byte) []byte {
	if *protocol == "seed001" {
		if bytes.HasPrefix(frame, []byte("lg ")) {
			return frame
		}
		return nil
	}
	if !bytes.HasPrefix(frame, []byte(`{"type":"message"`)) {
		return nil
	}
	i := bytes.Index(frame, hubbubToken)
	if i < 0 {
		return nil
	}
	return frame[i+len(`"text":"`):]
}

func connect(i int) *websocket.Conn {
	c, _, err := websocket.DefaultDialer.Dial(*url, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "client %d: %v\n", i, err)
		os.Exit(1)
	}
	if *protocol == "hubbub" {
		join, _ := json.Marshal(map[string]string{
			"type": "join", "username": fmt.Sprintf("lg%d", i),
			"email": fmt.Sprintf("lg%d@load.test", i), "room": "load",
		})
		if err := c.WriteMessage(websocket.TextMessage, join); err != nil {
			fmt.Fprintf(os.Stderr, "client %d: %v\n", i, err)
			os.Exit(1)
		}
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				fmt.Fprintf(os.Stderr, "client %d: no welcome: %v\n", i, err)
				os.Exit(1)
			}
			if bytes.Contains(m, []byte(`"welcome"`)) {
				break
			}
			if bytes.Contains(m, []byte(`"error"`)) {
				fmt.Fprintf(os.Stderr, "client %d: join refused: %s\n", i, m)
				os.Exit(1)
			}
		}
	}
	return c
}

func read(me int, c *websocket.Conn, echo chan struct{}) {
	for {
		_, m, err := c.ReadMessage()
		if err != nil {
			gone.Add(1)
			return
		}
		p := payload(m)
		if p == nil {
			continue
		}
		if len(p) > 64 {
			p = p[:64]
		}
		f := strings.SplitN(string(p), " ", 5)
		if len(f) < 4 || f[0] != "lg" {
			continue
		}
		sender, _ := strconv.Atoi(f[1])
		us, _ := strconv.ParseUint(f[3], 10, 64)
		if measuring.Load() {
			delivered.Add(1)
			now := uint64(time.Since(start).Microseconds())
			if us > now {
				us = now
			}
			record(now - us)
		}
		if sender == me && echo != nil {
			select {
			case echo <- struct{}{}:
			default:
			}
		}
	}
}

func send(s int, c *websocket.Conn, echo chan struct{}, until time.Time) {
	period := time.Duration(float64(time.Second) / math.Max(*rate, 0.001))
	if !*closed {
		time.Sleep(time.Duration(float64(period) * float64(s) / math.Max(float64(*senders), 1)))
	}
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for seq := 0; time.Now().Before(until); seq++ {
		if *closed {
			if seq > 0 {
				select {
				case <-echo:
				case <-time.After(time.Second):
				}
			}
		} else {
			<-ticker.C
		}
		text := fmt.Sprintf("lg %d %d %d ", s, seq, time.Since(start).Microseconds())
		for len(text) < *size {
			text += "."
		}
		var frame []byte
		if *protocol == "hubbub" {
			frame, _ = json.Marshal(map[string]string{"type": "message", "text": text})
		} else {
			frame = []byte(text)
		}
		if c.WriteMessage(websocket.TextMessage, frame) != nil {
			return
		}
		sent.Add(1)
	}
}

// CPU ticks (user + system) of a process, from /proc.
func ticks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	u, _ := strconv.ParseUint(f[11], 10, 64)
	k, _ := strconv.ParseUint(f[12], 10, 64)
	return u + k
}

func main() {
	flag.Parse()
	conns := make([]*websocket.Conn, *clients)
	echoes := make([]chan struct{}, *senders)
	for i := range conns {
		conns[i] = connect(i)
		var echo chan struct{}
		if i < *senders {
			echo = make(chan struct{}, 1)
			echoes[i] = echo
		}
		go read(i, conns[i], echo)
	}
	time.Sleep(500 * time.Millisecond)
	server0, own0 := ticks(*pid), ticks(os.Getpid())
	measuring.Store(true)
	until := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	for s := 0; s < *senders; s++ {
		go send(s, conns[s], echoes[s], until)
	}
	time.Sleep(time.Until(until))
	server1, own1 := ticks(*pid), ticks(os.Getpid())
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) &&
		delivered.Load() < sent.Load()*uint64(*clients-int(gone.Load())) {
		time.Sleep(50 * time.Millisecond)
	}
	d, n := delivered.Load(), sent.Load()
	serverCPU, ownCPU := float64(server1-server0)/100, float64(own1-own0)/100
	name := *label
	if name == "" {
		name = *protocol
	}
	mode := fmt.Sprintf("%g/s/sender", *rate)
	if *closed {
		mode = "closed-loop"
	}
	fmt.Printf("%s (loadgen-go): clients=%d senders=%d mode=%s seconds=%g\n", name, *clients, *senders, mode, *seconds)
	var lost uint64
	if want := n * uint64(*clients); want > d {
		lost = want - d
	}
	fmt.Printf("  sent=%d delivered=%d lost=%d readers_disconnected=%d\n", n, d, lost, gone.Load())
	fmt.Printf("  deliveries/s=%.0f\n", float64(d) / *seconds)
	fmt.Printf("  latency_ms p50=%.2f p99=%.2f p999=%.2f max=%.2f\n",
		percentile(0.5)/1000, percentile(0.99)/1000, percentile(0.999)/1000, float64(maxUs.Load())/1000)
	if *pid != 0 {
		verdict := ""
		if ownCPU > serverCPU {
			verdict = " SUSPECT: the generator used more CPU than the server"
		}
		fmt.Printf("  server: cpu_s=%.2f deliveries_per_cpu_s=%.0f cpu_us_per_delivery=%.2f\n",
			serverCPU, float64(d)/serverCPU, serverCPU*1e6/float64(d))
		fmt.Printf("  generator: cpu_s=%.2f%s\n", ownCPU, verdict)
	}
}
