throw new Error('@napi-rs/wasm-tools is replaced by a stand-in in edgemodule (only needed for cross or wasm builds)')
