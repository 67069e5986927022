//! Frame codec for JavaScript: plain JS objects in, MessagePack bytes out,
//! and back, with the same typed errors as the native decoder.

use shared_protocol::frame::{ClientFrame, ServerFrame, MAX_FRAME_BYTES};
use wasm_bindgen::prelude::*;

fn to_js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Encodes a client frame given as a JS object, e.g.
/// `{ Publish: { client_seq: 1, kind: "note", payload: {...}, delivery: "reliable" } }`.
#[wasm_bindgen(js_name = encodeClientFrame)]
pub fn encode_client_frame(frame: JsValue) -> Result<Vec<u8>, JsError> {
    let frame: ClientFrame = serde_wasm_bindgen::from_value(frame).map_err(to_js_error)?;
    frame.encode().map_err(to_js_error)
}

/// Decodes a client frame (what the proxy receives) into a JS object.
#[wasm_bindgen(js_name = decodeClientFrame)]
pub fn decode_client_frame(bytes: &[u8]) -> Result<JsValue, JsError> {
    let frame = ClientFrame::decode(bytes, MAX_FRAME_BYTES).map_err(to_js_error)?;
    to_js(&frame)
}

/// Decodes a server frame into a JS object; throws with the decoder's reason.
#[wasm_bindgen(js_name = decodeServerFrame)]
pub fn decode_server_frame(bytes: &[u8]) -> Result<JsValue, JsError> {
    let frame = ServerFrame::decode(bytes, MAX_FRAME_BYTES).map_err(to_js_error)?;
    to_js(&frame)
}

/// Maps become plain objects, so frames read naturally in JS.
fn to_js<T: serde::Serialize>(value: &T) -> Result<JsValue, JsError> {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value.serialize(&serializer).map_err(to_js_error)
}
