"""CosyVoice v1 (CosyVoice-300M, -SFT): its loader, LM decoding, chunked vocoding, engine and tiny
builder. v1's LM takes the speaker vector, so its `spk2info.pt` speakers are real voices; it reads a
whole text before it speaks (no streamed text in), and its audio streams out at 22 050 Hz."""
