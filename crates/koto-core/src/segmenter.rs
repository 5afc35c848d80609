//! Streaming segmenter: cuts LLM text into speakable segments as it arrives. No IO.
