"""The routing page (being built)."""

import streamlit as st

st.title("routing")
