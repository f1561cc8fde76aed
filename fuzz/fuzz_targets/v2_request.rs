//! KServe V2 inference requests, JSON and binary: the first byte says whether the body
//! has an `Inference-Header-Content-Length` (and the next two its value), the rest is the
//! body. Whatever is accepted has binary data that fits each input's shape and datatype,
//! and whole-number and finite elements convert to JSON and back to the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use runner_core::v2::{decode_request, element_size, Tensor};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (header, body) = match (mode % 3, rest) {
        (0, body) => (None, body),
        (1, [high, low, body @ ..]) => (Some(u16::from_be_bytes([*high, *low]).to_string()), body),
        (_, body) => (Some(String::from_utf8_lossy(&body[..body.len().min(4)]).into_owned()), body),
    };
    let Ok(request) = decode_request(Bytes::copy_from_slice(body), header.as_deref()) else { return };
    for input in &request.inputs {
        let Some(raw) = &input.raw else { continue };
        let count = input.element_count().expect("an accepted raw input has a shape");
        if let Some(size) = element_size(&input.datatype).expect("an accepted raw input has a known datatype") {
            assert_eq!(raw.len(), count * size, "{}", input.name);
        }
        let Ok(json) = input.to_json() else { continue };
        let whole = matches!(
            input.datatype.as_str(),
            "UINT8"
                | "UINT16"
                | "UINT32"
                | "UINT64"
                | "INT8"
                | "INT16"
                | "INT32"
                | "INT64"
                | "FP32"
                | "FP64"
                | "FP16"
                | "BF16"
        );
        let finite =
            json.as_array().is_some_and(|values| values.iter().all(|v| v.as_f64().is_some_and(f64::is_finite)));
        if whole && finite {
            let back = Tensor::json(input.name.clone(), input.shape.clone(), input.datatype.clone(), json.clone())
                .to_raw()
                .unwrap_or_else(|e| panic!("{} as JSON {json} does not convert back: {e}", input.name));
            assert_eq!(&back, raw, "{} ({}) through JSON {json}", input.name, input.datatype);
        }
    }
});
