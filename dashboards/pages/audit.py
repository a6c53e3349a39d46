"""The audit page (being built)."""

import streamlit as st

st.title("audit")
