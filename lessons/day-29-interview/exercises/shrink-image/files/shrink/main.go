package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	name, _ := os.Hostname()
	fmt.Printf("hello from a very small image (%s, %s/%s, container %s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, name)
}
