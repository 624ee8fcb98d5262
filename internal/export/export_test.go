package export

// SetBeforeUpload installs a hook that runs between a run's existence check
// and its conditional upload; the returned func removes it.
func SetBeforeUpload(f func(key string)) func() {
	beforeUpload = f
	return func() { beforeUpload = nil }
}

// SetBeforeStream installs a hook that runs on an export's reading
// goroutine before it reads; the returned func removes it.
func SetBeforeStream(f func()) func() {
	beforeStream = f
	return func() { beforeStream = nil }
}
