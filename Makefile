# The two commands (see README.md):
#   make run    install what is missing, build the release app, serve it on Leptos.toml's address
#   make test   install what is missing, then lint, unit/integration tests and browser tests
.PHONY: install run dev build lint unit e2e test bench

install:
	@scripts/install.sh

build: install
	scripts/leptos.sh build --release
	node scripts/precompress.mjs target/site/pkg

run: build
	target/release/hubbub

dev: install
	scripts/leptos.sh watch

lint:
	cargo fmt --all -- --check
	cargo clippy --features ssr --all-targets -- -D warnings
	cargo clippy --lib --features hydrate --target wasm32-unknown-unknown -- -D warnings

unit:
	cargo test --features ssr

# The browser tests run the release binary that `build` made, against Debian's Chromium.
e2e: build
	cd end2end && npx playwright test

test: install lint unit e2e
