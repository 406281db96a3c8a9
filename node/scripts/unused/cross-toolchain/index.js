throw new Error('@napi-rs/cross-toolchain is replaced by a stand-in in edgemodule (only needed for cross or wasm builds)')
